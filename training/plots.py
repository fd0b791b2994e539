"""PNG plots for a run directory: learning curves, age scatter, ROC, reliability diagram."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; CI has no display
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from training.metrics import roc_auc, roc_curve


def plot_learning_curves(history_csv: Path, out: Path) -> None:
    """Training vs validation loss, age MAE and sex AUC per epoch."""
    rows = list(csv.DictReader(history_csv.open()))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    panels = [("loss", "loss"), ("age_mae", "age MAE (years)"), ("sex_auc", "sex ROC AUC")]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in rows], label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_age_scatter(
    true: npt.NDArray[np.floating], pred: npt.NDArray[np.floating], out: Path, title: str
) -> None:
    """Predicted vs true age with the identity line."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, pred, s=8, alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true age (years)")
    ax.set_ylabel("predicted age (years)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_roc(
    male: npt.NDArray[np.bool_], p_male: npt.NDArray[np.floating], out: Path, title: str
) -> None:
    """ROC curve of P(male) with its AUC."""
    fpr, tpr = roc_curve(male, p_male)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(male, p_male):.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    ax.set_xlabel("false-positive rate (females called male)")
    ax.set_ylabel("true-positive rate (males found)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_reliability(
    male: npt.NDArray[np.bool_],
    curves: dict[str, npt.NDArray[np.floating]],
    out: Path,
    bins: int = 10,
) -> None:
    """Share of males per bin of predicted P(male), one line per variant (before/after scaling)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for label, p in curves.items():
        which = np.minimum((p * bins).astype(int), bins - 1)
        xs, ys = [], []
        for b in range(bins):
            sel = which == b
            if sel.any():
                xs.append(float(p[sel].mean()))
                ys.append(float(np.mean(male[sel])))
        ax.plot(xs, ys, "o-", label=label)
    ax.set_xticks(edges[::2])
    ax.set_xlabel("predicted P(male)")
    ax.set_ylabel("observed share male")
    ax.set_title("reliability (validation)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
