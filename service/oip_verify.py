"""The wrong-patient check over OIP v2: optional inputs with the recorded values, extra outputs.

Inputs (both optional, FP32 [N, 1] or [N], one row per image; -1 or NaN = not recorded, since
JSON has no NaN): `expected_male` (1 = male, 0 = female) and `expected_age` (years, 0–120). When
either is sent, the answer adds `mismatch_checked` UINT8 [N, 1] (1 = something was compared),
`mismatch_score` and `mismatch_threshold` FP32 [N, 1] (the row's mode; 0 where not checked) and
`mismatch` UINT8 [N, 1] (1 = flagged). The maths and the card section are cxr/verify.py's, as
for /v1/verify.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from cxr.demographics import Recorded
from cxr.verify import MismatchParams, verify
from service.errors import BadRequest
from service.oip import InferInput

VERIFY_INPUTS = ("expected_male", "expected_age")
VERIFY_OUTPUTS = ("mismatch_checked", "mismatch_score", "mismatch_threshold", "mismatch")


def supported(card: Any) -> bool:
    """The card can score both parts (a fitted 'mismatch' section, or metrics for the fallback)."""
    try:
        return MismatchParams.from_card(card).age_scale_same is not None
    except (KeyError, TypeError, ValueError):  # a malformed section: not offered
        return False


def input_metadata() -> list[dict[str, Any]]:
    return [{"name": n, "datatype": "FP32", "shape": [-1, 1]} for n in VERIFY_INPUTS]


def output_metadata() -> list[dict[str, Any]]:
    return [
        {"name": "mismatch_checked", "datatype": "UINT8", "shape": [-1, 1]},
        {"name": "mismatch_score", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "mismatch_threshold", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "mismatch", "datatype": "UINT8", "shape": [-1, 1]},
    ]


def _column(item: InferInput, rows: int) -> npt.NDArray[np.float64]:
    if item.datatype != "FP32" or item.array is None:
        raise BadRequest(f"input {item.name!r} must be FP32 [N, 1], got {item.datatype}")
    values = np.asarray(item.array, np.float64)
    if values.shape not in ((rows,), (rows, 1)):
        raise BadRequest(
            f"input {item.name!r} has shape {list(values.shape)}; the image input "
            f"has {rows} rows, so send [{rows}, 1]"
        )
    values = values.reshape(rows).copy()
    values[values == -1.0] = np.nan  # -1: not recorded (JSON clients cannot send NaN)
    return values


def verify_outputs(
    card: Any, outputs: dict[str, npt.NDArray[Any]], expected: dict[str, InferInput]
) -> tuple[dict[str, npt.NDArray[Any]], list[tuple[str, str]]]:
    """The extra tensors, and (decision, mode) per compared row for the metrics."""
    if not supported(card):
        raise BadRequest(
            f"{sorted(expected)}: this model's card has no 'mismatch' section nor "
            "validation metrics; the wrong-patient check is not available over v2"
        )
    params = MismatchParams.from_card(card)
    ages = np.asarray(outputs["age"], np.float64).reshape(-1)
    p_male = np.asarray(outputs["p_male"], np.float64).reshape(-1)
    rows = len(ages)
    nan = np.full(rows, np.nan)
    male = _column(expected["expected_male"], rows) if "expected_male" in expected else nan
    age = _column(expected["expected_age"], rows) if "expected_age" in expected else nan
    for i in range(rows):
        if not (math.isnan(male[i]) or male[i] in (0.0, 1.0)):
            raise BadRequest(
                f"expected_male[{i}] is {male[i]:g}; send 1 (male), 0 (female) or -1 (not recorded)"
            )
        if not (math.isnan(age[i]) or 0.0 <= age[i] <= 120.0):
            raise BadRequest(
                f"expected_age[{i}] is {age[i]:g}; send 0–120 years or -1 (not recorded)"
            )
    checked = np.zeros((rows, 1), np.uint8)
    score = np.zeros((rows, 1), np.float32)
    threshold = np.zeros((rows, 1), np.float32)
    flagged = np.zeros((rows, 1), np.uint8)
    seen: list[tuple[str, str]] = []
    for i in range(rows):
        recorded = Recorded(
            sex=None if math.isnan(male[i]) else ("M" if male[i] == 1.0 else "F"),
            age_years=None if math.isnan(age[i]) else float(age[i]),
        )
        verdict = verify(float(p_male[i]), float(ages[i]), recorded, params)
        if verdict.mode is None:
            continue
        checked[i, 0], score[i, 0], threshold[i, 0] = 1, verdict.score, verdict.threshold
        flagged[i, 0] = verdict.decision == "mismatch"
        seen.append((verdict.decision, verdict.mode))
    tensors = {
        "mismatch_checked": checked,
        "mismatch_score": score,
        "mismatch_threshold": threshold,
        "mismatch": flagged,
    }
    return tensors, seen
