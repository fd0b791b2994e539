"""Cross-site evaluation: per-source tables and leave-one-source-out (LOSO) runs.

`python -m training loso --data ../shared/data …` trains once per source with ≥ --min-images
images, holding that source out entirely (it is the test split; the others give train and
validation by patient), then pools the held-out predictions. The same residuals and logits
calibrate the trust numbers for sources the model has never seen:

- age interval half-widths: conformal quantiles of the pooled held-out |errors|; each source's
  coverage is measured with half-widths fitted on the OTHER held-out sources only;
- P(male) temperature: fitted on the pooled validation splits, ECE reported per held-out source;
- input guard: the factor on the validation-99th-percentile distance that keeps the flag rate of
  every unseen source's genuine radiographs ≤ 5 %.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

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
from training.metrics import all_metrics, baseline_metrics

logger = logging.getLogger(__name__)
GUARD_MAX_FLAG_RATE = 0.05
AGE_BANDS = (0.0, 40.0, 60.0, 200.0)  # bands of PREDICTED age (known at inference time)


def _r(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))


def load_preds(run_dir: Path) -> dict[str, npt.NDArray]:
    """The per-image predictions evaluate_run saved."""
    with np.load(Path(run_dir) / "preds.npz") as z:
        return {k: z[k] for k in z.files}


def metrics_with_baseline(
    p: dict, sel: npt.NDArray[np.bool_], train: npt.NDArray[np.bool_], temperature: float
) -> dict:
    """Model metrics, the trivial baseline from the training labels, ECE, for the rows in sel."""
    prob = sigmoid(p["logit"][sel] / temperature)
    model = all_metrics(p["age"][sel], p["male"][sel], p["age_pred"][sel], prob)
    base = baseline_metrics(p["age"][train], p["male"][train], p["age"][sel], p["male"][sel])
    return {
        "n": int(sel.sum()),
        "model": {k: _r(v) for k, v in model.items()},
        "baseline": {k: _r(v) for k, v in base.items()},
        "sex_ece": _r(expected_calibration_error(p["male"][sel], prob)),
    }


def source_table(p: dict, split: str = "test") -> dict[str, dict]:
    """Per-source metrics on one split of one run (baseline: that run's training labels)."""
    train = p["split"] == "train"
    t = float(p["temperature"])
    out = {}
    for s in sorted(set(p["source"][p["split"] == split].tolist())):
        sel = (p["split"] == split) & (p["source"] == s)
        out[s or "all"] = metrics_with_baseline(p, sel, train, t)
    sel = p["split"] == split
    if len(out) > 1:
        out["pooled"] = metrics_with_baseline(p, sel, train, t)
    return out


def print_table(table: dict[str, dict], title: str) -> None:
    """age MAE / R² next to the median baseline, sex AUC / accuracy next to the majority one."""
    print(f"\n{title}")
    print(
        f"{'source':<16}{'n':>5}{'MAE':>7}{'(base)':>8}{'R²':>7}{'(base)':>8}{'AUC':>7}"
        f"{'acc':>7}{'(base)':>8}{'ECE':>7}{'cov90':>7}{'flag':>7}"
    )
    for s, row in table.items():
        m, b = row["model"], row["baseline"]
        cov = row.get("coverage_0.9", float("nan"))
        flag = row.get("guard_flag_rate", float("nan"))
        print(
            f"{s:<16}{row['n']:>5}{m['age_mae']:>7.2f}{b['age_mae']:>8.2f}{m['age_r2']:>7.2f}"
            f"{b['age_r2']:>8.2f}{m['sex_auc']:>7.3f}{m['sex_accuracy']:>7.3f}"
            f"{b['sex_accuracy']:>8.3f}{row['sex_ece']:>7.3f}{cov:>7.3f}{flag:>7.3f}"
        )


def band_of(age_pred: npt.NDArray) -> npt.NDArray[np.int_]:
    """Index of the predicted-age band."""
    return np.digitize(age_pred, AGE_BANDS[1:-1])


def banded_quantiles(residual: npt.NDArray, age_pred: npt.NDArray) -> dict[str, dict[str, float]]:
    """Conformal half-widths per band of predicted age (Mondrian conformal)."""
    bands = band_of(age_pred)
    return {
        str(b): conformal_quantiles(residual[bands == b])
        for b in range(len(AGE_BANDS) - 1)
        if (bands == b).sum() >= 20
    }


def banded_coverage(residual: npt.NDArray, age_pred: npt.NDArray, q: dict) -> dict[str, float]:
    """Coverage of band-wise half-widths (bands without their own fall back to the widest)."""
    bands = band_of(age_pred)
    out: dict[str, float] = {}
    if not q:  # too few calibration residuals per band
        return out
    for level in q[next(iter(q))]:
        widest = max(v[level] for v in q.values())
        width = np.array([q.get(str(b), {}).get(level, widest) for b in bands])
        out[level] = float(np.mean(residual <= width))
    return out


def summarise(out_dir: Path, sources: list[str]) -> dict:
    """Pool the held-out predictions of every fold; fit and check the cross-site trust numbers."""
    folds = {s: load_preds(out_dir / s) for s in sources}
    table: dict[str, dict] = {}
    res, val_logit, val_male = {}, [], []
    pooled = {k: [] for k in ("age", "male", "age_pred", "logit", "base_age", "base_male")}
    guard_ratio = {}
    for s, p in folds.items():
        te, tr, va = p["split"] == "test", p["split"] == "train", p["split"] == "validation"
        table[s] = metrics_with_baseline(p, te, tr, float(p["temperature"]))
        res[s] = np.abs(p["age_pred"][te] - p["age"][te])
        val_logit.append(p["logit"][va])
        val_male.append(p["male"][va])
        for k in ("age", "male", "age_pred", "logit"):
            pooled[k].append(p[k][te])
        pooled["base_age"].append(np.full(te.sum(), np.median(p["age"][tr])))
        pooled["base_male"].append(np.full(te.sum(), float(np.mean(p["male"][tr]) > 0.5)))
        mean, inv_cov = fit_guard(p["embedding"][tr].astype(np.float64))
        d = mahalanobis(p["embedding"].astype(np.float64), mean, inv_cov)
        guard_ratio[s] = d[te] / np.percentile(d[va], GUARD_PERCENTILE)
    cat = {k: np.concatenate(v) for k, v in pooled.items()}

    # One temperature for unseen sites: the pooled validation splits of every fold.
    t_pooled = fit_temperature(np.concatenate(val_logit), np.concatenate(val_male).astype(bool))
    for s, p in folds.items():
        te = p["split"] == "test"
        table[s]["sex_ece_pooled_temperature"] = _r(
            expected_calibration_error(p["male"][te], sigmoid(p["logit"][te] / t_pooled))
        )
    prob = sigmoid(cat["logit"] / t_pooled)
    model = all_metrics(cat["age"], cat["male"].astype(bool), cat["age_pred"], prob)
    base = all_metrics(cat["age"], cat["male"].astype(bool), cat["base_age"], cat["base_male"])
    table["pooled"] = {
        "n": len(cat["age"]),
        "model": {k: _r(v) for k, v in model.items()},
        "baseline": {k: _r(v) for k, v in base.items()},
        "sex_ece": _r(expected_calibration_error(cat["male"].astype(bool), prob)),
    }

    # Intervals: fitted on the other held-out sources, checked on this one.
    all_res = np.concatenate([res[s] for s in sources])
    all_pred = np.concatenate([folds[s]["age_pred"][folds[s]["split"] == "test"] for s in sources])
    for s in sources if len(sources) > 1 else []:  # one held-out source has no "others"
        others = np.concatenate([res[o] for o in sources if o != s])
        cov = interval_coverage(res[s], conformal_quantiles(others))
        o_pred = np.concatenate(
            [folds[o]["age_pred"][folds[o]["split"] == "test"] for o in sources if o != s]
        )
        te = folds[s]["split"] == "test"
        cov_b = banded_coverage(res[s], folds[s]["age_pred"][te], banded_quantiles(others, o_pred))
        for level in cov:
            table[s][f"coverage_{level}"] = _r(cov[level])
            table[s][f"coverage_banded_{level}"] = _r(cov_b[level]) if level in cov_b else None
    quantiles = conformal_quantiles(all_res)

    # Guard: the smallest factor on the validation p99 that flags ≤ 5 % of every unseen source.
    factor = max(
        1.0,
        max(
            float(np.quantile(r, 1 - GUARD_MAX_FLAG_RATE, method="higher"))
            for r in guard_ratio.values()
        ),
    )
    for s, r in guard_ratio.items():
        table[s]["guard_flag_rate_at_val_p99"] = _r(np.mean(r > 1.0))
        table[s]["guard_flag_rate"] = _r(np.mean(r > factor))
    summary = {
        "held_out_sources": sources,
        "table": table,
        "age_interval": {
            "quantiles": {k: _r(v, 3) for k, v in quantiles.items()},
            "banded_quantiles": {
                b: {k: _r(v, 3) for k, v in q.items()}
                for b, q in banded_quantiles(all_res, all_pred).items()
            },
            "bands_predicted_age": list(AGE_BANDS),
            "n_calibration": len(all_res),
        },
        "temperature_pooled_validation": _r(t_pooled, 6),
        "guard_factor": _r(factor, 4),
    }
    (out_dir / "loso.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_loso(
    cfg: TrainConfig, out_dir: str | Path, min_images: int = 100, sources: list[str] | None = None
) -> dict:
    """Train one model per held-out source (resuming finished folds), then summarise."""
    from training.data import read_dataset
    from training.sources import source_counts
    from training.train import train

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = source_counts(read_dataset(cfg.data, "multi"))
    held = sources or [s for s, n in counts.items() if n >= min_images]
    logger.info("LOSO over %s (images per source: %s)", held, counts)
    for s in held:
        fold = replace(cfg, format="multi", leave_out=s, run_dir=str(out_dir / s))
        if (out_dir / s / "preds.npz").is_file():
            logger.info("fold %s already done: %s", s, out_dir / s)
            continue
        train(fold)
    summary = summarise(out_dir, held)
    print_table(summary["table"], f"leave-one-source-out ({out_dir})")
    print(
        f"pooled-validation temperature {summary['temperature_pooled_validation']}; "
        f"guard factor {summary['guard_factor']}; interval half-widths "
        f"{summary['age_interval']['quantiles']}"
    )
    return summary


def cross_site_card(run_dir: Path, loso_dir: Path, trust: dict, metrics: dict) -> tuple[dict, dict]:
    """The final run's trust/metrics with the LOSO cross-site numbers folded in (additive keys).

    Interval half-widths come from the held-out-source residuals (wider than in-distribution
    ones, honestly so); the guard threshold is the final model's validation 99th percentile
    times the LOSO factor; the temperature stays the final model's (pooled validation).
    """
    loso = json.loads((Path(loso_dir) / "loso.json").read_text())
    p = load_preds(run_dir)
    va, te = (p["split"] == s for s in ("validation", "test"))
    trust = json.loads(json.dumps(trust))
    table = loso["table"]
    held = loso["held_out_sources"]

    q = loso["age_interval"]["quantiles"]
    residual = np.abs(p["age_pred"] - p["age"])
    interval = trust["age_interval"]
    interval.update(
        {
            "method": "conformal on leave-one-source-out residuals: |age error| quantiles of "
            "models tested on a hospital/collection they never saw; interval = age ± quantile",
            "quantiles": q,
            "coverage_test": {k: _r(v) for k, v in interval_coverage(residual[te], q).items()},
            "n_calibration": loso["age_interval"]["n_calibration"],
            "in_distribution_quantiles": interval["quantiles"],
            "coverage_held_out_source": {
                s: {k.split("_")[-1]: table[s][k] for k in table[s] if k.startswith("coverage_0")}
                for s in held
            },
            "coverage_held_out_source_rule": (
                "half-widths fitted on the other held-out sources only"
            ),
        }
    )

    t = float(trust["sex_calibration"]["temperature"])
    prob = sigmoid(p["logit"] / t)
    by_source = {}
    for s in sorted(set(p["source"][te].tolist())):
        sel = te & (p["source"] == s)
        by_source[s] = _r(expected_calibration_error(p["male"][sel], prob[sel]))
    trust["sex_calibration"].update(
        {
            "method": "temperature scaling of the sex logit, fitted on the pooled validation "
            "split of all sources (applied inside model.onnx)",
            "ece_test_by_source": by_source,
            "ece_held_out_source": {s: table[s]["sex_ece_pooled_temperature"] for s in held},
        }
    )

    guard = trust["input_guard"]
    mean, inv_cov = np.array(guard["mean"]), np.array(guard["inv_cov"])
    dist = mahalanobis(p["embedding"].astype(np.float64), mean, inv_cov)
    base = float(np.percentile(dist[va], GUARD_PERCENTILE))
    threshold = base * float(loso["guard_factor"])
    guard.update(
        {
            "threshold": _r(threshold, 5),
            "threshold_rule": f"{GUARD_PERCENTILE:g}th percentile of validation distances × "
            f"{loso['guard_factor']} (the factor that keeps ≤ "
            f"{GUARD_MAX_FLAG_RATE:.0%} of every held-out source's genuine radiographs "
            "flagged in leave-one-source-out runs)",
            "false_flag_rate": {
                s: _r(float(np.mean(dist[m] > threshold)))
                for s, m in (("validation", va), ("test", te))
            },
            "false_flag_rate_held_out_source": {s: table[s]["guard_flag_rate"] for s in held},
        }
    )

    metrics = {
        "cross_site": {
            "rule": "leave-one-source-out: trained without the source, tested "
            "on all of it; baseline = median age / majority sex of "
            "that run's training labels",
            **{s: table[s] for s in [*held, "pooled"]},
        },
        **metrics,
        "by_source_test": source_table(p, "test"),
    }
    return trust, metrics
