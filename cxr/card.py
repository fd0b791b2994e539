"""The model card (models/model.json): the one contract between training, the API and the web app.

One typed schema (pydantic), read and written only through this module:

- training builds a `ModelCard` and calls `write_card` (sha256 of model.onnx via `file_sha256`);
- the service calls `load_card`, then checks the ONNX session against `card.input`/`outputs`;
- the web app validates the card the API serves with `ModelCard.model_validate`.

A missing or wrong-typed key is refused with a `CardError` naming the key
(`model card models/model.json: 'input.shape' — Field required`). Sections may gain keys later
(additive changes, docs/contracts.md): unknown keys are kept, never dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Only pydantic at import time: the web app validates the card without the imaging stack.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from cxr.imaging import PreprocessParams

PREPROCESSING_ID = "cxr-gray-crop-letterbox-v1"  # cxr.imaging.PREPROCESSING_ID (a test pins both)

AGE_DISPLAY_RANGE = (0.0, 120.0)  # every age interval is clipped to this, in one place (bounds)


class CardError(ValueError):
    """The card is missing, unreadable, or a key is missing / of the wrong type."""


class _Section(BaseModel):
    """Typed where the stack reads it; extra keys (later additions) are kept as they are."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class InputSpec(_Section):
    name: str
    shape: list[int | None] = Field(min_length=2)
    dtype: Literal["float32", "uint8"]
    layout: Literal["NHWC"] = "NHWC"
    value_range: list[float] = [0, 255]


class Preprocessing(_Section):
    """`cxr.imaging.PreprocessParams` with the id of the pipeline that uses them."""

    id: Literal["cxr-gray-crop-letterbox-v1"] = PREPROCESSING_ID
    size: int = Field(gt=0)
    border_threshold: int = Field(10, ge=0, le=255)
    border_min_fraction: float = Field(0.02, ge=0, le=1)
    resample: Literal["bilinear", "bicubic", "lanczos", "area"] = "bilinear"

    @classmethod
    def of(cls, params: PreprocessParams) -> Preprocessing:
        return cls(
            size=params.size,
            border_threshold=params.border_threshold,
            border_min_fraction=params.border_min_fraction,
            resample=params.resample,
        )

    def params(self) -> PreprocessParams:
        from cxr.imaging import PreprocessParams

        return PreprocessParams(
            size=self.size,
            border_threshold=self.border_threshold,
            border_min_fraction=self.border_min_fraction,
            resample=self.resample,
        )


class OutputSpec(_Section):
    name: str
    shape: list[int | None] | None = None
    dtype: str = "float32"
    unit: str | None = None
    meaning: str | None = None


class AgeInterval(_Section):
    """Split-conformal interval: age ± the residual quantile at a level ("0.8", "0.9", …)."""

    method: str = ""
    quantiles: dict[str, float] = Field(min_length=1)

    @field_validator("quantiles")
    @classmethod
    def _levels_are_fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for level, q in value.items():
            try:
                ok = 0 < float(level) < 1
            except ValueError:
                ok = False
            if not ok or not math.isfinite(q) or q < 0:
                raise ValueError(
                    f"level {level!r} → {q!r}: levels are fractions in (0, 1), half-widths ≥ 0"
                )
        return value

    def levels(self) -> list[str]:
        return sorted(self.quantiles, key=float)

    def bounds(self, ages: npt.ArrayLike, level: str = "0.9") -> npt.NDArray[np.float64] | None:
        """(N, 2) [low, high] years for each age, clipped to AGE_DISPLAY_RANGE; None without
        this level. The one place intervals are computed (/v1 JSON and OIP v2 tensors)."""
        import numpy as np

        q = self.quantiles.get(level)
        if q is None:
            return None
        age = np.asarray(ages, dtype=np.float64).reshape(-1)
        lo, hi = AGE_DISPLAY_RANGE
        return np.stack([np.clip(age - q, lo, hi), np.clip(age + q, lo, hi)], axis=1)

    def around(self, age: float, level: str = "0.9") -> list[float] | None:
        """[low, high] for one age, rounded to 0.01 y; None without this level or for NaN.
        The same arithmetic as `bounds` (float64 subtraction, then clipping), in plain floats:
        numpy's array set-up cost ~20 µs a call, twice per prediction (tests/test_card.py)."""
        q = self.quantiles.get(level)
        if q is None or not math.isfinite(age):
            return None
        lo, hi = AGE_DISPLAY_RANGE
        age = float(age)
        low, high = min(max(age - q, lo), hi), min(max(age + q, lo), hi)
        return [round(low, 2), round(high, 2)]


class InputGuardStats(_Section):
    """Mahalanobis statistics of the `embedding` output over the training images."""

    method: str = ""
    embedding_output: str = "embedding"
    mean: list[float] = Field(min_length=1)
    inv_cov: list[list[float]]
    threshold: float = Field(ge=0)

    @field_validator("inv_cov")
    @classmethod
    def _square(cls, value: list[list[float]], info: Any) -> list[list[float]]:
        n = len(info.data.get("mean") or [])
        if len(value) != n or any(len(row) != n for row in value):
            shape = (len(value), len(value[0]) if value else 0)
            raise ValueError(f"inv_cov is {shape[0]}×{shape[1]}; mean has {n} values")
        return value


class ModelCard(_Section):
    """Everything inference needs to know about model.onnx (docs/contracts.md)."""

    name: str
    version: str
    created: str | None = None
    input: InputSpec
    preprocessing: Preprocessing
    outputs: list[OutputSpec] = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    architecture: dict[str, Any] | None = None
    training_data: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    age_interval: AgeInterval | None = None
    sex_calibration: dict[str, Any] | None = None
    input_guard: InputGuardStats | None = None
    export_parity: dict[str, Any] | None = None
    frameworks: dict[str, Any] | None = None
    intended_use: str | None = None
    disclaimer: str | None = None

    @property
    def params(self) -> PreprocessParams:
        return self.preprocessing.params()

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def public(self) -> dict[str, Any]:
        """The card as JSON-ready data, keys as they were given (what /v1/models serves)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {_short(got)})"
        problems.append(f"{key!r} — {err['msg']}{shown}")
    return "; ".join(problems)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_card(data: object, source: str = "model card") -> ModelCard:
    """Validate card data (a dict); CardError naming every bad key."""
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise CardError(f"{source}: {_describe(exc)}") from None


def load_card(path: Path) -> ModelCard:
    """Read and validate model.json; CardError naming the file and the key when it is not usable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"model card {path} not found") from None
    except (OSError, ValueError) as exc:
        raise CardError(f"model card {path} is not valid JSON: {exc}") from None
    return parse_card(data, f"model card {path}")


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+|null)(?:,\s*(?:-?[\d.eE+-]+|null))*)\s*\]")


def card_json(card: ModelCard | dict[str, Any]) -> str:
    """Indented JSON, each list of numbers on one line (the guard's matrix stays readable)."""
    data = card.public() if isinstance(card, ModelCard) else card
    text = json.dumps(data, indent=2)
    return (
        _NUMBER_LIST.sub(
            lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text
        )
        + "\n"
    )


def write_card(card: ModelCard | dict[str, Any], path: Path) -> ModelCard:
    """Validate, then write model.json; returns the validated card."""
    typed = card if isinstance(card, ModelCard) else parse_card(card, f"model card for {path}")
    Path(path).write_text(card_json(typed), encoding="utf-8")
    return typed


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks: the card's `sha256` of model.onnx."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
