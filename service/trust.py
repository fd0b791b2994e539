"""What the model card says about trusting one prediction: age intervals and the input guard."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

AGE_DISPLAY_RANGE = (0.0, 120.0)
UNUSUAL_INPUT = "unusual_input"


@dataclass(frozen=True)
class AgeInterval:
    """Split-conformal interval: age ± the card's residual quantile at a level."""

    quantiles: dict[str, float]

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> AgeInterval | None:
        section = card.get("age_interval") or {}
        quantiles = section.get("quantiles") if isinstance(section, dict) else None
        if not isinstance(quantiles, dict) or not quantiles:
            return None
        return cls({str(k): float(v) for k, v in quantiles.items()})

    def around(self, age: float, level: str = "0.9") -> list[float] | None:
        """[low, high] in years, clipped to 0–120; None when the card has no such level."""
        q = self.quantiles.get(level)
        if q is None or not math.isfinite(age):
            return None
        lo, hi = AGE_DISPLAY_RANGE
        return [round(max(lo, age - q), 2), round(min(hi, age + q), 2)]


@dataclass(frozen=True)
class InputGuard:
    """Mahalanobis distance of the model's embedding from the training images' embeddings."""

    output: str
    mean: npt.NDArray[np.float64]
    inv_cov: npt.NDArray[np.float64]
    threshold: float

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> InputGuard | None:
        section = card.get("input_guard")
        if not isinstance(section, dict):
            return None
        mean = np.asarray(section["mean"], dtype=np.float64)
        inv_cov = np.asarray(section["inv_cov"], dtype=np.float64)
        if inv_cov.shape != (mean.size, mean.size):
            raise ValueError(f"input_guard inv_cov is {inv_cov.shape}; mean has {mean.size} values")
        return cls(str(section.get("embedding_output", "embedding")), mean, inv_cov,
                   float(section["threshold"]))

    def distance(self, embedding: npt.NDArray[Any]) -> float:
        """sqrt((e − mean)ᵀ · inv_cov · (e − mean)) for one embedding row."""
        diff = np.asarray(embedding, dtype=np.float64).reshape(-1) - self.mean
        return float(math.sqrt(max(0.0, float(diff @ self.inv_cov @ diff))))

    def check(self, outputs: dict[str, npt.NDArray[Any]], row: int) -> dict[str, str] | None:
        """A warning when this row's input is far from the training images, else None."""
        if self.output not in outputs:
            return None
        d = self.distance(outputs[self.output][row])
        if d <= self.threshold:
            return None
        return {"code": UNUSUAL_INPUT, "message": (
            f"this image is unlike the chest X-rays the model was trained on (distance {d:.1f}, "
            f"threshold {self.threshold:.1f}); treat the prediction with caution")}
