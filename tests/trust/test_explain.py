"""/v1/explain on real models: one 65-row batch, sane shapes, and (on a phantom model whose cues
are known pixel by pixel) hot patches where the cues are."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.http import scrape
from tests.support.procs import run_training
from training.phantom import generate_phantom, phantom_png

GRID = 8
SIZE = 64
# Small and quick (~1.5 min on 2 cores): enough for the phantom's cues to be learned.
PHANTOM_TRAIN = [
    "--format",
    "phantom",
    "--n",
    "240",
    "--image-size",
    str(SIZE),
    "--epochs",
    "12",
    "--batch-size",
    "16",
    "--learning-rate",
    "2e-3",
    "--workers",
    "2",
]


def explain(url: str, data: bytes) -> dict:
    r = httpx.post(f"{url}/v1/explain", files={"file": ("x.png", data)}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_explain_is_one_batch_of_65_with_arrays_and_overlays(serve_demo, nih, card) -> None:
    srv = serve_demo()  # fresh: its metrics hold only this request
    body = explain(srv.url, next((nih / "images").glob("*.png")).read_bytes())
    assert body["batch_size"] == GRID * GRID + 1
    m = scrape(srv.url)
    assert m["cxr_batch_size_count"] == 1 and m["cxr_batch_size_sum"] == GRID * GRID + 1
    assert m["cxr_batch_size_bucket{le=64.0}"] == 0 and m["cxr_batch_size_bucket{le=128.0}"] == 1
    assert body["grid"] == GRID and body["patch_px"] == card["input"]["shape"][1] // GRID
    for key in ("delta_age", "delta_p_male"):
        values = np.array(body[key])
        assert values.shape == (GRID, GRID) and np.isfinite(values).all()
        assert np.abs(values).max() > 0  # hiding some patch moves the prediction
    for key in ("overlay_age_png", "overlay_p_male_png"):
        img = Image.open(io.BytesIO(base64.b64decode(body[key])))
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (256, 256)
    peak = float(np.abs(np.array(body["delta_age"])).max())
    assert f"{peak:.2f} years" in body["legend"]["age"] and "red" in body["legend"]["p_male"]
    # the original row is the ordinary prediction, trust fields included
    predicted = httpx.post(
        f"{srv.url}/v1/predict", content=next((nih / "images").glob("*.png")).read_bytes()
    ).json()
    assert body["age_years"] == pytest.approx(predicted["age_years"], abs=1e-3)
    assert body["age_interval_90"] == pytest.approx(predicted["age_interval_90"], abs=0.02)


def test_explain_flags_what_predict_flags(demo_url) -> None:
    from tests.support import samples

    body = explain(demo_url, samples.colour_photograph(2))
    assert "colour_image" in [w["code"] for w in body["warnings"]]


# ---- a phantom model: the generator knows where the age and sex cues are ---------------------


@pytest.fixture(scope="module")
def phantom_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train and export a small model on 240 synthetic phantoms (64², 12 epochs)."""
    run_dir = tmp_path_factory.mktemp("phantom-explain")
    done = run_training("train", *PHANTOM_TRAIN, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_training("export", "--run-dir", str(run_dir), "--out", str(run_dir / "models"))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "models" / "model.json").read_text())["metrics"]["test"]
    # The overlap claim below is only meaningful for a model that learned the cues (the
    # phantom's sex cue overlaps between the sexes on purpose, so AUC stays below 1).
    assert metrics["sex_auc"] > 0.75 and metrics["age_r2"] > 0.3, metrics
    return run_dir / "models"


def cue_patches(mask: np.ndarray) -> np.ndarray:
    """(GRID, GRID) bool: patches at least a quarter covered by the cue mask."""
    p = SIZE // GRID
    return mask.reshape(GRID, p, GRID, p).mean(axis=(1, 3)) >= 0.25


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.slow  # trains a model (240 phantoms, 12 epochs) for its fixture
@pytest.mark.parametrize(
    "cue, output, top, male",
    [
        # age: spine, ribs and aortic-arch calcification, in every phantom
        ("age", "delta_age", 8, None),
        # sex: soft-tissue shadows over the lower lung fields, bright in female phantoms
        ("sex", "delta_p_male", 4, False),
    ],
)
def test_hottest_patches_lie_on_the_phantom_cues(
    serve_demo, phantom_models, cue, output, top, male
) -> None:
    srv = serve_demo(phantom_models)
    hits = draws = 0
    chance = []
    for i in range(12):
        sample = generate_phantom(70_000 + i, SIZE, male=male)
        body = explain(srv.url, phantom_png(sample))
        heat = np.abs(np.array(body[output])).ravel()
        on_cue = cue_patches(sample.age_mask if cue == "age" else sample.sex_mask).ravel()
        hottest = np.argsort(heat)[::-1][:top]
        hits += int(on_cue[hottest].sum())
        draws += top
        chance.append(float(on_cue.mean()))
    p = float(np.mean(chance))
    rate = hits / draws
    # Far above chance: at least 25 points more, and a chance result this good is < 1 in 10⁴.
    assert rate >= p + 0.25, (cue, rate, p)
    assert binomial_tail(hits, draws, p) < 1e-4, (cue, hits, draws, p)
