"""training/mismatch.py and cxr/verify.py: the wrong-patient check's fitting and maths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cxr.demographics import Recorded
from cxr.verify import MismatchParams, age_llr, fallback_from_card, sex_llr, verify
from training.mismatch import fit, measure, roc_auc, scores, swap_pairs

CARD = Path(__file__).resolve().parents[2] / "models" / "model.json"


def test_roc_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 40), rng.normal(1, 1, 30)
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(neg, pos) == pytest.approx(pairwise)
    assert roc_auc(np.zeros(3), np.zeros(3)) == 0.5


def test_swap_pairs_never_pair_a_patient_with_themselves() -> None:
    i, j = swap_pairs(["a", "a", "b", "c"])
    assert len(i) == 4 * 4 - 4 - 2 and all(not {a, b} <= {0, 1} for a, b in zip(i, j))


def test_fit_holds_alpha_and_finds_swaps_of_a_good_model() -> None:
    rng = np.random.default_rng(1)
    n = 400
    age, male = rng.uniform(20, 90, n), rng.random(n) < 0.5
    pred = age + rng.laplace(0, 3, n)
    p_male = np.where(male, 0.97, 0.03)
    patients = [str(k) for k in range(n)]
    params = fit(age, male, pred, p_male, patients, alpha=0.05)
    assert params.age_scale_same == pytest.approx(3, rel=0.2)
    assert params.age_scale_other > 5 * params.age_scale_same
    report = measure(params, age, male, pred, p_male, patients)
    assert report["both"]["false_alarm_rate"] <= 0.06
    assert report["both"]["roc_auc"] > 0.9 and report["both"]["detection_rate"] > 0.6
    assert report["both"]["prevalence_0.1"]["ppv"] > report["both"]["prevalence_0.01"]["ppv"]
    vector = scores(params, "both", pred[:1], p_male[:1], age[:1], male[:1])[0]
    scalar = verify(p_male[0], pred[0], Recorded("M" if male[0] else "F", "t", age[0], "t"), params)
    assert scalar.score == pytest.approx(vector)


def test_llr_parts() -> None:
    assert sex_llr(0.5, "M", 0.5) == pytest.approx(0.0)
    assert sex_llr(1.0, "F", 0.5, p_clip=0.001) == pytest.approx(math.log(500))
    assert age_llr(50, 50, 5, 10) == pytest.approx(math.log(0.5))
    assert age_llr(50, 80, 5, 10) > age_llr(50, 60, 5, 10)


def test_committed_card_has_a_usable_section_and_the_fallback_bounds_false_alarms() -> None:
    card = json.loads(CARD.read_text())
    params = MismatchParams.from_card(card)
    assert params.source == "card" and params.alpha == 0.01
    fallback = fallback_from_card({k: v for k, v in card.items() if k != "mismatch"})
    assert fallback.source.startswith("fallback")
    # sex-only fallback threshold: log(0.5/α) → a calibrated P(recorded sex) below α
    assert fallback.thresholds["sex"] == pytest.approx(math.log(50))
    assert fallback.thresholds["both"] > max(fallback.thresholds["sex"], fallback.thresholds["age"])
    verdict = verify(0.5, 40, Recorded(notes=("PatientSex is 'O': sex check skipped",)), params)
    assert verdict.decision == "not_checked" and len(verdict.notes) == 2
