"""`python -m training evaluate --mismatch`: how well the wrong-patient check finds swapped exams.

Uses the exported model (model.onnx + model.json, through onnxruntime, exactly what the API
serves) on a labelled dataset split the way training split it (same rule and seed). Swaps are
simulated: each image is paired with another patient's recorded age and sex (every pair of two
different patients, so the numbers do not hang on one random draw).

1. Fit the check on the validation split (cxr/verify.py's parameters): b0 = mean |age error|,
   b1 = mean |other patient's age − predicted age| over all pairs, π(M) = share of males, and per
   mode ("both", "sex", "age") the threshold = the (1 − α) quantile of the scores of correctly
   labelled exams (α = 1 % by default).
2. Measure on the test split: ROC AUC of the score for swapped vs correct exams, the detection
   rate at the validation threshold and the false-alarm rate it really gives, and what a reader of
   the flags sees at a swap prevalence of 1 % and 10 % (positive predictive value, flags per
   1,000 exams).
3. `--write-card` stores the fitted section as the card's "mismatch" key (model.onnx unchanged).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cxr.card import card_json, parse_card
from cxr.verify import DEFAULT_ALPHA, DEFAULT_P_CLIP, MODES, MismatchParams
from training.config import TrainConfig
from training.data import Record, read_dataset
from training.loading import load_images
from training.train import split_data

logger = logging.getLogger(__name__)
F64 = npt.NDArray[np.float64]
PREVALENCES = (0.01, 0.10)


def predict_onnx(model_dir: Path, images: npt.NDArray[np.uint8]) -> tuple[F64, F64]:
    """Predicted age and P(male) from the exported model (what the API serves)."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    ages, pms = [], []
    for start in range(0, len(images), 64):
        x = images[start : start + 64, :, :, None].astype(np.float32)
        age, p_male = session.run(["age", "p_male"], {"image": x})
        ages.append(age[:, 0])
        pms.append(p_male[:, 0])
    return np.concatenate(ages).astype(np.float64), np.concatenate(pms).astype(np.float64)


def sex_scores(p_male: F64, male: npt.NDArray[np.bool_], prior: float, clip: float) -> F64:
    """Vectorised cxr.verify.sex_llr."""
    q = np.clip(np.where(male, p_male, 1.0 - p_male), clip, 1.0 - clip)
    return np.log(np.where(male, prior, 1.0 - prior)) - np.log(q)


def age_scores(pred: F64, recorded: F64, b0: float, b1: float) -> F64:
    """Vectorised cxr.verify.age_llr."""
    return np.log(b0 / b1) + np.abs(recorded - pred) * (1.0 / b0 - 1.0 / b1)


def scores(
    params: MismatchParams,
    mode: str,
    pred_age: F64,
    p_male: F64,
    rec_age: F64,
    rec_male: npt.NDArray[np.bool_],
) -> F64:
    """The check's score in one mode for arrays of (prediction, recorded values)."""
    s_sex = sex_scores(p_male, rec_male, params.p_male_prior, params.p_clip)
    s_age = age_scores(pred_age, rec_age, params.age_scale_same, params.age_scale_other)
    return {"both": s_sex + s_age, "sex": s_sex, "age": s_age}[mode]


def swap_pairs(patients: list[str]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """All (image i, recorded values of image j) pairs with i and j from different patients."""
    ids = np.array(patients)
    i, j = np.meshgrid(np.arange(len(ids)), np.arange(len(ids)), indexing="ij")
    keep = ids[i] != ids[j]
    return i[keep], j[keep]


def fit(
    age: F64,
    male: npt.NDArray[np.bool_],
    pred: F64,
    p_male: F64,
    patients: list[str],
    alpha: float = DEFAULT_ALPHA,
) -> MismatchParams:
    """The check's parameters and thresholds from one split (validation)."""
    i, j = swap_pairs(patients)
    b0 = float(np.mean(np.abs(age - pred)))
    b1 = float(np.mean(np.abs(age[j] - pred[i])))
    prior = float(np.mean(male))
    draft = MismatchParams(b0, b1, prior, dict.fromkeys(MODES, 0.0), alpha=alpha)
    thresholds = {
        m: float(np.quantile(scores(draft, m, pred, p_male, age, male), 1 - alpha)) for m in MODES
    }
    return MismatchParams(b0, b1, prior, thresholds, alpha=alpha, p_clip=DEFAULT_P_CLIP)


def roc_auc(negatives: F64, positives: F64) -> float:
    """P(score of a random positive > a random negative), ties counted half (Mann–Whitney)."""
    both = np.concatenate([negatives, positives])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # tied values share their average rank
    ranks = mean_rank[inverse]
    n_neg, n_pos = len(negatives), len(positives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_neg * n_pos))


def measure(
    params: MismatchParams,
    age: F64,
    male: npt.NDArray[np.bool_],
    pred: F64,
    p_male: F64,
    patients: list[str],
) -> dict[str, Any]:
    """Per mode: AUC, detection and false-alarm rates at the threshold, prevalence effects."""
    i, j = swap_pairs(patients)
    out: dict[str, Any] = {"images": len(age), "swap_pairs": len(i)}
    for mode in MODES:
        correct = scores(params, mode, pred, p_male, age, male)
        swapped = scores(params, mode, pred[i], p_male[i], age[j], male[j])
        t = params.thresholds[mode]
        fa, det = float(np.mean(correct >= t)), float(np.mean(swapped >= t))
        # the detection rate when the threshold is set on this split at exactly α false alarms
        t_here = float(np.quantile(correct, 1 - params.alpha))
        row: dict[str, Any] = {
            "roc_auc": round(roc_auc(correct, swapped), 4),
            "false_alarm_rate": round(fa, 4),
            "detection_rate": round(det, 4),
            "detection_at_alpha_on_this_split": round(float(np.mean(swapped >= t_here)), 4),
        }
        differs = male[i] != male[j]  # swaps that change the recorded sex
        row["detection_rate_sex_differs"] = round(float(np.mean(swapped[differs] >= t)), 4)
        row["detection_rate_sex_same"] = round(float(np.mean(swapped[~differs] >= t)), 4)
        for prev in PREVALENCES:
            flagged = prev * det + (1 - prev) * fa
            row[f"prevalence_{prev:g}"] = {
                "ppv": round(prev * det / flagged, 4) if flagged else None,
                "flags_per_1000": round(1000 * flagged, 1),
                "swaps_found_per_1000": round(1000 * prev * det, 1),
            }
        out[mode] = row
    out["simulated_worklists"] = simulate_worklists(params, age, male, pred, p_male, patients)
    return out


def simulate_worklists(
    params: MismatchParams,
    age: F64,
    male: npt.NDArray[np.bool_],
    pred: F64,
    p_male: F64,
    patients: list[str],
    *,
    repeats: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Worklists of this split's exams where each exam is, with probability = prevalence, filed
    under another patient's values: what one such worklist looks like (mean, 5–95 % range)."""
    rng = np.random.default_rng(seed)
    ids = np.array(patients)
    n = len(age)
    out: dict[str, Any] = {"exams_per_worklist": n, "repeats": repeats}
    for prev in PREVALENCES:
        found, flags, swaps = [], [], []
        for _ in range(repeats):
            swapped = rng.random(n) < prev
            donor = np.arange(n)
            for k in np.flatnonzero(swapped):  # another patient's recorded values
                others = np.flatnonzero(ids != ids[k])
                donor[k] = rng.choice(others)
            score = scores(params, "both", pred, p_male, age[donor], male[donor])
            flagged = score >= params.thresholds["both"]
            swaps.append(int(swapped.sum()))
            found.append(int((flagged & swapped).sum()))
            flags.append(int(flagged.sum()))

        def summary(values: list[int]) -> dict[str, float]:
            a = np.asarray(values, np.float64)
            return {
                "mean": round(float(a.mean()), 2),
                "p5": float(np.percentile(a, 5)),
                "p95": float(np.percentile(a, 95)),
            }

        out[f"prevalence_{prev:g}"] = {
            "swaps": summary(swaps),
            "flags": summary(flags),
            "swaps_flagged": summary(found),
        }
    return out


def run(
    data: Path,
    fmt: str,
    model_dir: Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    alpha: float,
    workers: int,
) -> tuple[MismatchParams, dict[str, Any]]:
    """Fit on validation, measure on test; returns the parameters and the report."""
    card = json.loads((model_dir / "model.json").read_text())
    params = parse_card(card, "model card").params  # checks the card, as the API does
    records: list[Record] = read_dataset(data, fmt)
    images, records = load_images(records, params, workers)
    # the trainer's own split (per source when the data has sources): test stays unseen
    cfg = TrainConfig(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    names, rule = split_data(records, cfg)
    pred, p_male = predict_onnx(model_dir, images)
    age = np.array([r.age for r in records], np.float64)
    male = np.array([r.male for r in records], bool)
    patients = [r.patient_id or str(r.path) for r in records]
    report: dict[str, Any] = {"split": rule, "model": f"{card['name']} {card['version']}"}
    split = {s: np.flatnonzero(names == s) for s in ("validation", "test")}
    if len(split["validation"]) < 20 or len(split["test"]) < 20:
        raise ValueError(
            f"need ≥ 20 validation and test images, got "
            f"{len(split['validation'])} and {len(split['test'])}"
        )
    v, t = split["validation"], split["test"]
    fitted = fit(age[v], male[v], pred[v], p_male[v], [patients[k] for k in v], alpha)
    report["validation"] = measure(
        fitted, age[v], male[v], pred[v], p_male[v], [patients[k] for k in v]
    )
    report["test"] = measure(fitted, age[t], male[t], pred[t], p_male[t], [patients[k] for k in t])
    fallback = MismatchParams.from_card({k: v for k, v in card.items() if k != "mismatch"}, alpha)
    report["test_with_card_fallback"] = measure(
        fallback, age[t], male[t], pred[t], p_male[t], [patients[k] for k in t]
    )
    measured = {
        "false_alarm_rate": {
            "validation": report["validation"]["both"]["false_alarm_rate"],
            "test": report["test"]["both"]["false_alarm_rate"],
        },
        "test": {
            m: {k: report["test"][m][k] for k in ("roc_auc", "detection_rate", "false_alarm_rate")}
            for m in MODES
        },
    }
    fitted = MismatchParams(
        fitted.age_scale_same,
        fitted.age_scale_other,
        fitted.p_male_prior,
        fitted.thresholds,
        alpha=alpha,
        p_clip=fitted.p_clip,
        measured=measured,
    )
    return fitted, report


METHOD = (
    "log-likelihood ratio 'different person' vs 'same person' (cxr/verify.py): sex part "
    "from calibrated P(male), age part Laplace(b0) vs Laplace(b1) residuals; scales and "
    "per-mode thresholds (the (1 − alpha) quantile of correctly labelled exams) fitted on "
    "validation; swaps simulated by pairing images with other patients' recorded values"
)


def main(argv: list[str] | None = None) -> int:
    """CLI: fit + measure; print the report as JSON; optionally write the card section."""
    parser = argparse.ArgumentParser(
        prog="python -m training evaluate --mismatch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", required=True, help="labelled dataset folder")
    parser.add_argument("--format", default="auto")
    parser.add_argument("--model-dir", default="models", type=Path)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="share of correctly labelled validation exams flagged",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="store the fitted section as model.json's 'mismatch' key",
    )
    parser.add_argument("--out", type=Path, help="also write the report JSON here")
    args = parser.parse_args(argv)
    fitted, report = run(
        Path(args.data),
        args.format,
        args.model_dir,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        alpha=args.alpha,
        workers=args.workers,
    )
    report["fitted"] = fitted.to_card(METHOD)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.write_card:
        card_path = args.model_dir / "model.json"
        card = json.loads(card_path.read_text())
        card["mismatch"] = fitted.to_card(METHOD)
        card_path.write_text(card_json(card))
        logger.info("wrote the 'mismatch' section into %s", card_path)
    return 0
