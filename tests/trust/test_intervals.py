"""Age intervals from the card: present, consistent with the quantiles, and as good as claimed."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from cxr.card import AgeInterval
from tests.support.http import predict_many


def test_every_prediction_has_the_card_interval(demo_url, card, nih) -> None:
    q90 = card["age_interval"]["quantiles"]["0.9"]
    blobs = [(p.name, p.read_bytes()) for p in sorted((nih / "images").glob("*.png"))[:20]]
    for result in predict_many(demo_url, blobs):
        low, high = result["age_interval_90"]
        age = result["age_years"]
        assert low == pytest.approx(max(0.0, age - q90), abs=0.01)
        assert high == pytest.approx(min(120.0, age + q90), abs=0.01)
        assert "age_intervals" not in result  # other levels only on request


def test_other_levels_on_request(demo_url, card, nih) -> None:
    data = next((nih / "images").glob("*.png")).read_bytes()
    r = httpx.post(f"{demo_url}/v1/predict?intervals=0.8,0.9,95", content=data)
    assert r.status_code == 200, r.text
    body = r.json()
    widths = {level: hi - lo for level, (lo, hi) in body["age_intervals"].items()}
    assert list(widths) == ["0.8", "0.9", "0.95"]
    assert widths["0.8"] <= widths["0.9"] <= widths["0.95"]
    assert body["age_intervals"]["0.9"] == body["age_interval_90"]
    q = card["age_interval"]["quantiles"]
    for level, (lo, hi) in body["age_intervals"].items():
        assert hi == pytest.approx(min(120.0, body["age_years"] + q[level]), abs=0.01)
    batch = httpx.post(
        f"{demo_url}/v1/predict/batch?intervals=0.8", files=[("files", ("a.png", data))]
    ).json()
    assert set(batch["results"][0]["age_intervals"]) == {"0.8"}
    explained = httpx.post(f"{demo_url}/v1/explain?intervals=0.95", content=data, timeout=60).json()
    assert explained["age_intervals"]["0.95"] == pytest.approx(
        body["age_intervals"]["0.95"], abs=0.02
    )


@pytest.mark.parametrize("query, named", [("0.85", "'0.85'"), ("abc", "'abc'"), ("0.8,2", "'2'")])
def test_unknown_level_is_a_400_naming_it(demo_url, nih, query, named) -> None:
    data = next((nih / "images").glob("*.png")).read_bytes()
    r = httpx.post(f"{demo_url}/v1/predict?intervals={query}", content=data)
    assert r.status_code == 400
    assert named in r.json()["detail"] and "0.8, 0.9, 0.95" in r.json()["detail"]


def test_lower_bound_clamped_at_zero() -> None:
    interval = AgeInterval(quantiles={"0.9": 18.0})
    assert interval.around(5.0) == [0.0, 23.0]
    assert interval.around(110.0) == [92.0, 120.0]


def test_measured_coverage_matches_the_card(demo_url, card, test_split) -> None:
    """The test split through the API: coverage per level equals the card's claim (±1 image)."""
    levels = list(card["age_interval"]["quantiles"])
    blobs = [(r.path.name, r.path.read_bytes()) for r in test_split]
    results = predict_many(demo_url, blobs, "?intervals=" + ",".join(levels))
    age = np.array([r.age for r in test_split])
    tolerance = 1.5 / len(age)  # float noise may move an image sitting exactly on the boundary
    for level in levels:
        bounds = np.array([res["age_intervals"][level] for res in results])
        covered = float(np.mean((bounds[:, 0] <= age) & (age <= bounds[:, 1])))
        claimed = card["age_interval"]["coverage_test"][level]
        assert covered == pytest.approx(claimed, abs=tolerance), (level, covered, claimed)
        # conformal guarantee is marginal and n is small: allow 2 standard errors below nominal
        nominal = float(level)
        assert covered >= nominal - 2 * np.sqrt(nominal * (1 - nominal) / len(age)), level


def test_calibration_error_matches_the_card(demo_url, card, test_split) -> None:
    """P(male) from the API (already calibrated in the graph) has the card's test ECE."""
    from training.calibration import expected_calibration_error

    blobs = [(r.path.name, r.path.read_bytes()) for r in test_split]
    p = np.array([res["p_male"] for res in predict_many(demo_url, blobs)])
    male = np.array([r.male for r in test_split])
    cal = card["sex_calibration"]
    ece = expected_calibration_error(male, p, bins=cal["bins"])
    assert ece == pytest.approx(cal["ece_after"]["test"], abs=0.005)
