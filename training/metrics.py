"""Age and sex metrics, and the trivial baselines every result is shown next to (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.floating]


def age_metrics(true: Array, pred: Array) -> dict[str, float]:
    """MAE, RMSE, R² and the share of predictions within ±5 years."""
    err = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    var = float(np.var(true))
    return {
        "age_mae": float(np.mean(np.abs(err))),
        "age_rmse": float(np.sqrt(np.mean(err**2))),
        "age_r2": float(1.0 - np.mean(err**2) / var) if var > 0 else float("nan"),
        "age_within_5y": float(np.mean(np.abs(err) <= 5.0)),
    }


def roc_auc(male: npt.NDArray[np.bool_], score: Array) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); NaN if one class is absent."""
    male = np.asarray(male, bool)
    n_pos, n_neg = int(male.sum()), int((~male).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    return float((ranks[male].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(male: npt.NDArray[np.bool_], score: Array) -> tuple[Array, Array]:
    """False- and true-positive rates as the threshold sweeps from high to low."""
    male = np.asarray(male, bool)
    order = np.argsort(-np.asarray(score), kind="stable")
    tp = np.concatenate([[0], np.cumsum(male[order])])
    fp = np.concatenate([[0], np.cumsum(~male[order])])
    return fp / max(1, fp[-1]), tp / max(1, tp[-1])


def sex_metrics(male: npt.NDArray[np.bool_], p_male: Array) -> dict[str, float]:
    """ROC AUC of P(male); accuracy, sensitivity (males found), specificity at 0.5."""
    male = np.asarray(male, bool)
    said_male = np.asarray(p_male) >= 0.5
    return {
        "sex_auc": roc_auc(male, p_male),
        "sex_accuracy": float(np.mean(said_male == male)),
        "sex_sensitivity": float(np.mean(said_male[male])) if male.any() else float("nan"),
        "sex_specificity": float(np.mean(~said_male[~male])) if (~male).any() else float("nan"),
    }


def all_metrics(
    age: Array, male: npt.NDArray[np.bool_], age_pred: Array, p_male: Array
) -> dict[str, float]:
    """Every metric key of the model card."""
    return {**age_metrics(age, age_pred), **sex_metrics(male, p_male)}


def baseline_metrics(
    train_age: Array, train_male: npt.NDArray[np.bool_], age: Array, male: npt.NDArray[np.bool_]
) -> dict[str, float]:
    """Predict the training median age and the training majority sex for everyone."""
    majority_male = float(np.mean(train_male)) > 0.5
    n = len(age)
    return all_metrics(
        age,
        male,
        np.full(n, float(np.median(train_age))),
        np.full(n, 1.0 if majority_male else 0.0),
    )
