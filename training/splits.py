"""Train/validation/test splits that do not leak: by patient when known, else stratified."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data import Record

SPLITS = ("train", "validation", "test")


def split_records(
    records: list[Record], val_fraction: float, test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.str_], str]:
    """Assign each record a split name; return the names and a sentence describing the rule."""
    rng = np.random.default_rng(seed)
    n = len(records)
    out = np.full(n, "train", dtype=object)
    if all(r.patient_id for r in records):
        patients = sorted({r.patient_id for r in records})
        rng.shuffle(patients)
        by_patient: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_patient.setdefault(str(r.patient_id), []).append(i)
        # Fill test, then validation, patient by patient, until each holds its share of images.
        targets = [("test", test_fraction * n), ("validation", val_fraction * n)]
        filled, t = 0, 0
        for p in patients:
            if t < len(targets) and filled >= targets[t][1]:
                t, filled = t + 1, 0
            if t >= len(targets):
                break
            out[by_patient[p]] = targets[t][0]
            filled += len(by_patient[p])
        rule = (
            f"by patient id (no patient in two splits), seed {seed}, "
            f"~{val_fraction:.0%} validation / {test_fraction:.0%} test of images"
        )
        return out.astype(str), rule
    # No patient id: rows may come in site blocks, so shuffle within age-decade × sex strata.
    strata: dict[tuple[int, bool], list[int]] = {}
    for i, r in enumerate(records):
        strata.setdefault((int(r.age // 10), r.male), []).append(i)
    for key in sorted(strata):
        idx = np.array(strata[key])
        rng.shuffle(idx)
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "validation"
    rule = (
        f"shuffled, stratified by age decade × sex, seed {seed}, "
        f"{val_fraction:.0%} validation / {test_fraction:.0%} test"
    )
    return out.astype(str), rule


def write_split(path: Path, records: list[Record], names: npt.NDArray[np.str_]) -> None:
    """split.csv: path, age, sex (M/F), patient_id, split, source — all export needs to reload."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "age", "sex", "patient_id", "split", "source"])
        for r, s in zip(records, names, strict=True):
            w.writerow(
                [
                    str(r.path.resolve()),
                    f"{r.age:g}",
                    "M" if r.male else "F",
                    r.patient_id or "",
                    s,
                    r.source or "",
                ]
            )


def read_split(path: Path) -> tuple[list[Record], npt.NDArray[np.str_]]:
    """Inverse of write_split."""
    records, names = [], []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            records.append(
                Record(
                    Path(row["path"]),
                    float(row["age"]),
                    row["sex"] == "M",
                    row["patient_id"] or None,
                    row.get("source") or None,
                )
            )
            names.append(row["split"])
    return records, np.array(names, dtype=str)
