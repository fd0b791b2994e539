"""Splits: no patient in two splits; stratified when there is no patient id; reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import Record
from training.splits import read_split, split_records, write_split


def make_records(n: int, with_patients: bool) -> list[Record]:
    rng = np.random.default_rng(0)
    return [
        Record(
            Path(f"/x/{i}.png"),
            float(rng.integers(18, 90)),
            bool(rng.random() < 0.5),
            f"p{i // 4}" if with_patients else None,
        )
        for i in range(n)
    ]


def test_patient_split_never_shares_a_patient():
    records = make_records(400, with_patients=True)
    names, rule = split_records(records, 0.15, 0.15, seed=3)
    by_patient: dict[str, set[str]] = {}
    for r, s in zip(records, names, strict=True):
        by_patient.setdefault(str(r.patient_id), set()).add(str(s))
    assert all(len(s) == 1 for s in by_patient.values())
    counts = {s: int(np.sum(names == s)) for s in ("train", "validation", "test")}
    assert 50 <= counts["test"] <= 70 and 50 <= counts["validation"] <= 70
    assert "by patient" in rule


def test_stratified_split_keeps_each_stratum_in_every_split():
    records = make_records(600, with_patients=False)
    names, rule = split_records(records, 0.15, 0.15, seed=1)
    assert "stratified" in rule
    for decade in range(1, 9):
        for male in (True, False):
            idx = [
                i for i, r in enumerate(records) if int(r.age // 10) == decade and r.male == male
            ]
            if len(idx) >= 20:
                assert {"train", "validation", "test"} <= set(names[idx])
    share = np.mean(names == "test")
    assert 0.12 < share < 0.18


def test_split_is_reproducible_and_round_trips(tmp_path):
    records = make_records(100, with_patients=False)
    a, _ = split_records(records, 0.2, 0.2, seed=5)
    b, _ = split_records(records, 0.2, 0.2, seed=5)
    c, _ = split_records(records, 0.2, 0.2, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    write_split(tmp_path / "split.csv", records, a)
    back, names = read_split(tmp_path / "split.csv")
    assert np.array_equal(names, a)
    assert [(r.age, r.male) for r in back] == [(r.age, r.male) for r in records]
