"""End to end on synthetic phantoms: train (CLI) → evaluate → export behind the parity gate.

`tiny`: 64 phantoms, 1 epoch (about a minute) — the default suite's full pass through the CLI.
`run`: 400 phantoms, 10 epochs — the learning tests, marked slow (`make test-all`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cxr.card import Preprocessing
from cxr.imaging import PreprocessParams, preprocess_bytes
from tests.support.procs import run_training
from training.metrics import roc_auc
from training.phantom import generate_phantom, phantom_png

ROOT = Path(__file__).resolve().parents[2]
TRAIN_ARGS = [
    "--format",
    "phantom",
    "--n",
    "400",
    "--image-size",
    "64",
    "--epochs",
    "10",
    "--batch-size",
    "16",
    "--learning-rate",
    "1e-3",
    "--workers",
    "2",
]
TINY_ARGS = [
    "--format",
    "phantom",
    "--n",
    "64",
    "--image-size",
    "64",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--workers",
    "2",
]
# TensorFlow / absl start-up chatter that `export` must not print
TF_NOISE = (
    "oneDNN",
    "cuda",
    "absl::InitializeLog",
    "tensorflow/core",
    "tf2onnx.tf_utils",
    "Using tensorflow",
    "rewriter",
    "Optimizing ONNX",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, str, str]:
    """A one-epoch run, exported with the command train printed: (run dir, train stdout, export
    stderr). The environment is left as a newcomer's (no TF_CPP_MIN_LOG_LEVEL)."""
    run_dir = tmp_path_factory.mktemp("tiny-run")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    trained = run_training("train", *TINY_ARGS, "--run-dir", str(run_dir), env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    command = re.search(r"python -m training (export .*)", trained.stdout)
    assert command, trained.stdout[-2000:]
    exported = run_training(
        *command.group(1).replace("--out models", f"--out {run_dir}/models").split(), env=env
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    return run_dir, trained.stdout, exported.stderr


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("phantom-run")
    done = run_training("train", *TRAIN_ARGS, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_training("export", "--run-dir", str(run_dir), "--out", str(run_dir / "models"))
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_run_dir_holds_everything(tiny):
    run = tiny[0]
    for name in (
        "config.json",
        "split.csv",
        "data.json",
        "history.csv",
        "best.keras",
        "metrics.json",
        "trust.json",
        "learning_curves.png",
        "age_scatter.png",
        "roc.png",
        "reliability.png",
    ):
        assert (run / name).is_file(), name
    assert (run / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_ends_with_where_the_run_is_and_the_export_command(tiny):
    run, stdout, _ = tiny
    assert f"run saved in {run}/" in stdout
    assert f"python -m training export --run-dir {run} --out models" in stdout


def test_export_is_quiet_and_versions_the_model_itself(tiny):
    run, _, stderr = tiny
    noise = [line for line in stderr.splitlines() if any(n in line for n in TF_NOISE)]
    assert not noise, noise
    assert "parity gate passed" in stderr
    version = json.loads((run / "models" / "model.json").read_text())["version"]
    assert re.fullmatch(r"20\d{6}-[0-9a-f]{8}", version), version
    assert f"version {version}" in stderr


@pytest.mark.slow
def test_model_beats_trivial_baselines_clearly(run):
    metrics = json.loads((run / "metrics.json").read_text())
    test, base = metrics["test"], metrics["baselines"]["test"]
    assert test["age_mae"] < 0.7 * base["age_mae"], (test, base)
    assert test["sex_auc"] > 0.85, test


def test_card_and_artifact(tiny):
    run = tiny[0]
    card = json.loads((run / "models" / "model.json").read_text())
    onnx_bytes = (run / "models" / "model.onnx").read_bytes()
    assert card["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert card["input"] == {
        "name": "image",
        "shape": [None, 64, 64, 1],
        "dtype": "float32",
        "layout": "NHWC",
        "value_range": [0, 255],
    }
    assert [o["name"] for o in card["outputs"]] == ["age", "p_male", "embedding"]
    assert Preprocessing.model_validate(card["preprocessing"]).params() == PreprocessParams(size=64)
    assert card["frameworks"]["onnx_opset"] >= 17
    assert card["export_parity"]["images"] >= 32
    assert max(card["export_parity"]["max_abs_diff"].values()) <= 1e-4
    assert card["training_data"]["dataset"].startswith("synthetic")
    assert sum(card["training_data"]["images"].values()) == 64
    assert card["disclaimer"] == "Research demo, not for clinical use."
    assert set(card["age_interval"]["quantiles"]) == {"0.8", "0.9", "0.95"}
    assert 0 < card["sex_calibration"]["temperature"]


@pytest.mark.slow
def test_exported_onnx_predicts_fresh_phantoms(run):
    """Unseen phantoms, through the serving preprocessing and ONNX Runtime: no Keras involved."""
    session = ort.InferenceSession(
        str(run / "models" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape == ["batch", 64, 64, 1]
    samples = [generate_phantom(10_000 + i, 128) for i in range(48)]
    x = np.stack([preprocess_bytes(phantom_png(s), PreprocessParams(size=64)) for s in samples])
    out = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"image": x}), strict=True)
    )
    age, p = out["age"][:, 0], out["p_male"][:, 0]
    assert out["embedding"].shape[0] == 48
    assert np.all((p >= 0) & (p <= 1))
    true_age = np.array([s.age for s in samples])
    male = np.array([s.male for s in samples])
    assert np.corrcoef(age, true_age)[0, 1] > 0.6
    assert roc_auc(male, p) > 0.8


@pytest.mark.slow
def test_occlusion_finds_the_phantom_cues(run):
    """The phantom knows where its cues are; the model's most sensitive patches must lie there."""
    session = ort.InferenceSession(
        str(run / "models" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    grid, patch = 8, 8
    share = {"age": [], "sex": []}
    for i in range(12):
        sample = generate_phantom(20_000 + i, 64)
        x = preprocess_bytes(phantom_png(sample), PreprocessParams(size=64))
        batch = [x]
        for r in range(grid):
            for c in range(grid):
                occluded = x.copy()
                occluded[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = x.mean()
                batch.append(occluded)
        out = dict(
            zip(
                [o.name for o in session.get_outputs()],
                session.run(None, {"image": np.stack(batch)}),
                strict=True,
            )
        )
        for key, output, mask in (
            ("age", "age", sample.age_mask),
            ("sex", "p_male", sample.sex_mask),
        ):
            change = np.abs(out[output][1:, 0] - out[output][0, 0])
            in_mask = mask.reshape(grid, patch, grid, patch).mean(axis=(1, 3)).ravel()
            top = np.argsort(change)[::-1][:6]
            share[key].append((in_mask[top].mean(), in_mask.mean()))
    for key, values in share.items():
        hot, chance = np.mean(values, axis=0)
        assert hot > 1.5 * chance, (key, hot, chance)


def test_evaluate_reproduces_the_training_metrics(tiny):
    """`evaluate` re-reads every image from disk: same numbers means train and eval saw the same
    tensors."""
    run = tiny[0]
    before = json.loads((run / "metrics.json").read_text())
    done = run_training("evaluate", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "baseline" in done.stdout
    after = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        for key, value in before[split].items():
            assert after[split][key] == pytest.approx(value, abs=1e-3), (split, key)


def test_failed_parity_gate_writes_nothing(tiny, tmp_path, monkeypatch):
    from training import export

    run = tiny[0]
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # no real model can pass this
    with pytest.raises(export.ParityError, match="differs from Keras"):
        export.export_run(run, tmp_path / "out")
    assert not list((tmp_path / "out").glob("model.*"))


def test_cli_reports_bad_data_without_traceback(tmp_path):
    done = run_training(
        "train",
        "--format",
        "csv",
        "--data",
        str(tmp_path / "missing"),
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
