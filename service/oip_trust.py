"""Trust fields as extra OIP v2 output tensors: the 90 % age interval and the guard distance.

Derived from the model's own outputs and the card, so a v2 client (tritonclient) gets what
/v1 answers as JSON: `age_interval_90` FP32 [N, 2] (low, high years) and `input_guard_distance`
FP32 [N, 1] (compare with the card's input_guard.threshold).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from cxr.card import AgeInterval
from cxr.guard import EmbeddingGuard

INTERVAL_OUTPUT = "age_interval_90"
DISTANCE_OUTPUT = "input_guard_distance"


def trust_outputs(
    interval: AgeInterval | None, guard: EmbeddingGuard | None, outputs: dict[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[np.float32]]:
    """The extra tensors this card supports, computed from one batch of model outputs."""
    extra: dict[str, npt.NDArray[np.float32]] = {}
    bounds = interval.bounds(outputs["age"]) if interval and "age" in outputs else None
    if bounds is not None:
        extra[INTERVAL_OUTPUT] = bounds.astype(np.float32)
    if guard is not None and guard.output in outputs:
        rows = outputs[guard.output]
        extra[DISTANCE_OUTPUT] = np.array([[guard.distance(e)] for e in rows], np.float32).reshape(
            len(rows), 1
        )
    return extra


def trust_output_metadata(
    interval: AgeInterval | None, guard: EmbeddingGuard | None, model_outputs: list[str]
) -> list[dict[str, Any]]:
    """Model-metadata entries for the tensors trust_outputs will add."""
    meta = []
    if interval is not None and "0.9" in interval.quantiles and "age" in model_outputs:
        meta.append({"name": INTERVAL_OUTPUT, "datatype": "FP32", "shape": [-1, 2]})
    if guard is not None and guard.output in model_outputs:
        meta.append({"name": DISTANCE_OUTPUT, "datatype": "FP32", "shape": [-1, 1]})
    return meta
