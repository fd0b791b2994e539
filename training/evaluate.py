"""`python -m training evaluate`: metrics beside trivial baselines, calibration, intervals,
guard."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cxr.imaging import PreprocessParams
from training.cache import load_images_cached
from training.calibration import (
    GUARD_PERCENTILE,
    conformal_quantiles,
    expected_calibration_error,
    fit_guard,
    fit_temperature,
    interval_coverage,
    mahalanobis,
    sigmoid,
)
from training.config import TrainConfig
from training.data import Record
from training.metrics import all_metrics, baseline_metrics
from training.plots import plot_age_scatter, plot_learning_curves, plot_reliability, plot_roc
from training.splits import read_split

logger = logging.getLogger(__name__)


def load_run_model(run_dir: Path):
    """The best checkpoint with its three outputs (age, sex logit, embedding)."""
    import keras

    from training.model import with_embedding

    return with_embedding(keras.models.load_model(run_dir / "best.keras", compile=False))


def predict(
    model, images: npt.NDArray[np.uint8], batch_size: int = 64
) -> dict[str, npt.NDArray[np.float64]]:
    """Age (years), sex logit and embedding for uint8 images (N, S, S)."""
    out = model.predict(images[..., None].astype(np.float32), batch_size=batch_size, verbose=0)
    return {
        "age": np.asarray(out["age"], np.float64)[:, 0],
        "logit": np.asarray(out["sex"], np.float64)[:, 0],
        "embedding": np.asarray(out["embedding"], np.float64),
    }


def load_split_images(
    run_dir: Path, cfg: TrainConfig
) -> tuple[npt.NDArray[np.uint8], list[Record], npt.NDArray[np.str_]]:
    """Re-decode the run's images from disk through the serving preprocessing."""
    records, names = read_split(run_dir / "split.csv")
    split_of = {r.path: s for r, s in zip(records, names, strict=True)}
    images, kept = load_images_cached(
        records, PreprocessParams(size=cfg.image_size), cfg.workers, cfg.cache_dir
    )
    return images, kept, np.array([split_of[r.path] for r in kept], dtype=str)


def _r(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


def evaluate_run(
    run_dir: str | Path,
    *,
    images: npt.NDArray[np.uint8] | None = None,
    records: list[Record] | None = None,
    names: npt.NDArray[np.str_] | None = None,
) -> dict:
    """Evaluate the run's best model; write metrics.json, trust.json and plots; return both."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.load(run_dir / "config.json")
    if images is None or records is None or names is None:
        images, records, names = load_split_images(run_dir, cfg)
    model = load_run_model(run_dir)
    age = np.array([r.age for r in records], np.float64)
    male = np.array([r.male for r in records], bool)
    pred = predict(model, images)
    sel = {s: names == s for s in ("train", "validation", "test")}
    if not sel["test"].any():
        raise ValueError("the test split is empty; use more images or a larger --test-fraction")

    # P(male) calibration: one temperature, fitted on validation, applied in the exported graph.
    va, te, tr = sel["validation"], sel["test"], sel["train"]
    temperature = fit_temperature(pred["logit"][va], male[va])
    p_raw = sigmoid(pred["logit"])
    p_cal = sigmoid(pred["logit"] / temperature)

    metrics: dict = {"validation": {}, "test": {}, "baselines": {}}
    for split in ("validation", "test"):
        m = sel[split]
        metrics[split] = {
            k: _r(v) for k, v in all_metrics(age[m], male[m], pred["age"][m], p_cal[m]).items()
        }
        metrics["baselines"][split] = {
            k: _r(v) for k, v in baseline_metrics(age[tr], male[tr], age[m], male[m]).items()
        }

    residual = np.abs(pred["age"] - age)
    quantiles = conformal_quantiles(residual[va])
    mean, inv_cov = fit_guard(pred["embedding"][tr])
    dist = mahalanobis(pred["embedding"], mean, inv_cov)
    threshold = float(np.percentile(dist[va], GUARD_PERCENTILE))
    trust = {
        "sex_calibration": {
            "method": (
                "temperature scaling of the sex logit, fitted on validation "
                "(applied inside model.onnx)"
            ),
            "temperature": _r(temperature, 6),
            "ece_before": {
                s: _r(expected_calibration_error(male[sel[s]], p_raw[sel[s]]))
                for s in ("validation", "test")
            },
            "ece_after": {
                s: _r(expected_calibration_error(male[sel[s]], p_cal[sel[s]]))
                for s in ("validation", "test")
            },
            "bins": 10,
        },
        "age_interval": {
            "method": (
                "split conformal: |age error| quantiles on validation; interval = age ± quantile"
            ),
            "quantiles": {k: _r(v, 3) for k, v in quantiles.items()},
            "coverage_test": {
                k: _r(v) for k, v in interval_coverage(residual[te], quantiles).items()
            },
            "n_calibration": int(va.sum()),
        },
        "input_guard": {
            "method": "Mahalanobis distance of the `embedding` output from the training embeddings",
            "embedding_output": "embedding",
            "dim": int(mean.shape[0]),
            "mean": [float(f"{v:.6g}") for v in mean],
            "inv_cov": [[float(f"{v:.6g}") for v in row] for row in inv_cov],
            "threshold": _r(threshold, 5),
            "threshold_rule": f"{GUARD_PERCENTILE:g}th percentile of validation distances",
            "false_flag_rate": {
                s: _r(float(np.mean(dist[sel[s]] > threshold))) for s in ("validation", "test")
            },
        },
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (run_dir / "trust.json").write_text(json.dumps(trust) + "\n")
    # Per-image predictions: per-source tables and cross-site calibration (training/crosssite.py).
    np.savez(
        run_dir / "preds.npz",
        age=age,
        male=male,
        age_pred=pred["age"],
        logit=pred["logit"],
        embedding=pred["embedding"].astype(np.float32),
        split=names.astype(str),
        source=np.array([r.source or "" for r in records], dtype=str),
        temperature=temperature,
    )
    _write_plots(run_dir, age, male, pred["age"], p_raw, p_cal, sel)
    print_report(metrics, trust)
    return {"metrics": metrics, "trust": trust}


def _write_plots(
    run_dir: Path,
    age: npt.NDArray,
    male: npt.NDArray,
    age_pred: npt.NDArray,
    p_raw: npt.NDArray,
    p_cal: npt.NDArray,
    sel: dict[str, npt.NDArray[np.bool_]],
) -> None:
    if (run_dir / "history.csv").is_file():
        plot_learning_curves(run_dir / "history.csv", run_dir / "learning_curves.png")
    te, va = sel["test"], sel["validation"]
    plot_age_scatter(age[te], age_pred[te], run_dir / "age_scatter.png", "age on the test split")
    plot_roc(male[te], p_cal[te], run_dir / "roc.png", "sex on the test split")
    plot_reliability(
        male[va], {"before": p_raw[va], "after temperature": p_cal[va]}, run_dir / "reliability.png"
    )


def print_report(metrics: dict, trust: dict) -> None:
    """Each metric next to its trivial baseline, so a weak model cannot pass for a good one."""
    for split in ("validation", "test"):
        print(f"\n{split:<16}{'model':>10}{'baseline':>10}")
        for key, value in metrics[split].items():
            print(f"{key:<16}{value:>10.4f}{metrics['baselines'][split][key]:>10.4f}")
    cal, interval = trust["sex_calibration"], trust["age_interval"]
    print(
        f"\nP(male) temperature {cal['temperature']:.3f}; ECE test "
        f"{cal['ece_before']['test']:.3f} → {cal['ece_after']['test']:.3f}"
    )
    print(
        f"age interval half-widths {interval['quantiles']}; test coverage "
        f"{interval['coverage_test']}"
    )
    guard = trust["input_guard"]
    print(f"input guard threshold {guard['threshold']:.2f}; false flags {guard['false_flag_rate']}")
