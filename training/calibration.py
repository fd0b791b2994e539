"""Trust statistics fitted on validation: temperature for P(male), conformal age intervals,
and the embedding-space input guard (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.floating]
INTERVAL_LEVELS = (0.8, 0.9, 0.95)
GUARD_PERCENTILE = 99.0  # the input guard's threshold: this percentile of validation distances
MIN_TEMPERATURE = 0.25


def sigmoid(z: Array) -> Array:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))


def _nll(logits: Array, male: npt.NDArray[np.bool_], temperature: float) -> float:
    z = np.asarray(logits, np.float64) / temperature
    # log(1 + e^{-z}) for positives, log(1 + e^{z}) for negatives
    return float(np.mean(np.logaddexp(0.0, np.where(male, -z, z))))


def fit_temperature(logits: Array, male: npt.NDArray[np.bool_]) -> float:
    """T minimising validation NLL of sigmoid(logit / T): coarse log grid, then a fine one.

    T stays ≥ 0.25: a perfectly separated validation set would otherwise drive T → 0 and turn
    P(male) into hard 0/1 answers, which no finite validation set can justify.
    """
    male = np.asarray(male, bool)
    grid = np.exp(np.linspace(np.log(MIN_TEMPERATURE), np.log(20.0), 200))
    best = grid[int(np.argmin([_nll(logits, male, t) for t in grid]))]
    fine = np.maximum(best * np.exp(np.linspace(-0.05, 0.05, 101)), MIN_TEMPERATURE)
    return float(fine[int(np.argmin([_nll(logits, male, t) for t in fine]))])


def expected_calibration_error(male: npt.NDArray[np.bool_], p_male: Array, bins: int = 10) -> float:
    """Σ_b (n_b / n) · |mean P(male) − share male| over equal-width bins of P(male)."""
    p = np.asarray(p_male, np.float64)
    male = np.asarray(male, bool)
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - male[sel].mean())
    return float(ece)


def conformal_quantiles(
    abs_residuals: Array, levels: tuple[float, ...] = INTERVAL_LEVELS
) -> dict[str, float]:
    """Split-conformal half-widths: the ⌈(n+1)·level⌉-th smallest validation |residual|."""
    r = np.sort(np.asarray(abs_residuals, np.float64))
    n = len(r)
    out = {}
    for level in levels:
        k = int(np.ceil((n + 1) * level))
        out[f"{level:g}"] = float(r[min(k, n) - 1])  # k > n would be ∞; the max is the honest cap
    return out


def interval_coverage(abs_residuals: Array, quantiles: dict[str, float]) -> dict[str, float]:
    """Measured share of |residual| ≤ half-width, per nominal level."""
    r = np.asarray(abs_residuals, np.float64)
    return {level: float(np.mean(r <= q)) for level, q in quantiles.items()}


def fit_guard(train_emb: Array, shrinkage: float = 0.1) -> tuple[Array, Array]:
    """Mean and inverse of a shrunk covariance (dead ReLU units make the raw one singular)."""
    e = np.asarray(train_emb, np.float64)
    mean = e.mean(axis=0)
    cov = np.cov(e, rowvar=False)
    d = cov.shape[0]
    target = max(np.trace(cov) / d, 1e-6)
    shrunk = (1 - shrinkage) * cov + shrinkage * target * np.eye(d)
    return mean, np.linalg.inv(shrunk)


def mahalanobis(emb: Array, mean: Array, inv_cov: Array) -> Array:
    """Distance of each row of emb from the training distribution."""
    diff = np.asarray(emb, np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, inv_cov, diff), 0.0))
