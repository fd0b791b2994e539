"""Metrics, baselines, temperature scaling, conformal intervals and the Mahalanobis guard."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import (
    conformal_quantiles,
    expected_calibration_error,
    fit_guard,
    fit_temperature,
    interval_coverage,
    mahalanobis,
    sigmoid,
)
from training.metrics import age_metrics, baseline_metrics, roc_auc, sex_metrics


def test_age_metrics_on_known_numbers():
    m = age_metrics(np.array([20.0, 40.0, 60.0]), np.array([22.0, 40.0, 50.0]))
    assert m["age_mae"] == pytest.approx(4.0)
    assert m["age_rmse"] == pytest.approx(np.sqrt(104 / 3))
    assert m["age_r2"] == pytest.approx(1 - (104 / 3) / np.var([20, 40, 60]))
    assert m["age_within_5y"] == pytest.approx(2 / 3)


def test_auc_counts_pairs_and_ties():
    male = np.array([True, True, False, False])
    assert roc_auc(male, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert roc_auc(male, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert roc_auc(male, np.array([0.5, 0.9, 0.5, 0.1])) == pytest.approx(0.875)  # one tie = half
    assert np.isnan(roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


def test_sex_metrics_and_baseline():
    male = np.array([True, True, True, False])
    m = sex_metrics(male, np.array([0.9, 0.6, 0.4, 0.3]))
    assert (m["sex_accuracy"], m["sex_sensitivity"], m["sex_specificity"]) == (
        0.75,
        pytest.approx(2 / 3),
        1.0,
    )
    b = baseline_metrics(
        np.array([30.0, 50.0, 70.0]),
        np.array([False, False, True]),
        np.array([40.0, 60.0]),
        np.array([True, False]),
    )
    assert b["age_mae"] == 10.0 and b["sex_auc"] == 0.5 and b["sex_accuracy"] == 0.5
    assert b["sex_sensitivity"] == 0.0 and b["sex_specificity"] == 1.0  # majority female: says F


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 5000)
    male = rng.random(5000) < sigmoid(true_logit)
    overconfident = 3.0 * true_logit
    t = fit_temperature(overconfident, male)
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(male, sigmoid(overconfident))
    after = expected_calibration_error(male, sigmoid(overconfident / t))
    assert after < before / 2


def test_conformal_quantiles_cover_at_nominal_rate():
    rng = np.random.default_rng(1)
    calib, test = np.abs(rng.normal(0, 10, 2000)), np.abs(rng.normal(0, 10, 20000))
    q = conformal_quantiles(calib)
    assert q["0.9"] == pytest.approx(16.45, rel=0.08)  # 1.645 σ
    cov = interval_coverage(test, q)
    for level, got in cov.items():
        assert abs(got - float(level)) < 0.03


def test_mahalanobis_flags_far_points():
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, (500, 8)) * np.arange(1, 9)
    train[:, 7] = 0.0  # a dead ReLU unit: shrinkage must keep the inverse finite
    mean, inv_cov = fit_guard(train)
    assert np.all(np.isfinite(inv_cov))
    near = mahalanobis(
        rng.normal(0, 1, (100, 8)) * np.arange(1, 9) * [1, 1, 1, 1, 1, 1, 1, 0], mean, inv_cov
    )
    far = mahalanobis(np.full((5, 8), 30.0), mean, inv_cov)
    assert far.min() > np.percentile(near, 99)


def test_temperature_is_bounded_on_separable_validation():
    logits = np.array([-3.0, -2.0, 2.0, 3.0])
    male = logits > 0  # perfectly separated: NLL keeps falling as T → 0
    assert fit_temperature(logits, male) == pytest.approx(0.25)
