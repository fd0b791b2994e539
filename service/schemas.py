"""Response bodies as pydantic models: they shape the OpenAPI docs and its examples."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["cxr-age-sex"])
    version: str = Field(examples=["1.0.0"])


class Timings(BaseModel):
    """Server-side milliseconds per stage."""

    preprocess: float = Field(examples=[3.1])
    queue: float = Field(examples=[0.4])
    inference: float = Field(examples=[1.2])
    total: float = Field(examples=[5.0])


class InputWarning(BaseModel):
    """Something about the input worth a human look (machine-readable code + a sentence)."""

    code: str
    message: str


class Prediction(BaseModel):
    """Predicted age and sex for one image."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "age_years": 54.2,
                    "sex": "male",
                    "p_male": 0.83,
                    "age_interval_90": [35.6, 72.8],
                    "model": {"name": "cxr-age-sex", "version": "1.0.0"},
                    "timings_ms": {"preprocess": 3.1, "queue": 0.4, "inference": 1.2, "total": 5.0},
                    "warnings": [],
                }
            ]
        },
    )

    age_years: float = Field(description="Predicted age in years.")
    sex: Literal["female", "male"] = Field(description="'male' when p_male ≥ 0.5.")
    p_male: float = Field(ge=0, le=1, description="Probability the patient is male.")
    age_interval_90: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[low, high] years: 90 % split-conformal interval (when the card has one).",
    )
    age_intervals: dict[str, list[float]] | None = Field(
        None,
        description="{level: [low, high]} for the levels asked for with `?intervals=`.",
        examples=[{"0.8": [41.0, 67.4], "0.95": [30.1, 78.3]}],
    )
    model: ModelRef
    timings_ms: Timings
    warnings: list[InputWarning] = []


class Explanation(BaseModel):
    """Occlusion sensitivity: how each patch's removal moved the predictions."""

    model_config = ConfigDict(protected_namespaces=())

    age_years: float
    sex: Literal["female", "male"]
    p_male: float
    age_interval_90: list[float] | None = None
    age_intervals: dict[str, list[float]] | None = None
    warnings: list[InputWarning] = []
    model: ModelRef
    grid: int = Field(description="patches per side", examples=[8])
    patch_px: int = Field(description="patch side in model-input pixels", examples=[8])
    delta_age: list[list[float]] = Field(
        description="grid×grid: predicted age with the patch greyed out minus the original (years)"
    )
    delta_p_male: list[list[float]] = Field(description="grid×grid: change of P(male)")
    overlay_age_png: str = Field(
        description="base64 PNG: red = occlusion raised age, blue = lowered"
    )
    overlay_p_male_png: str = Field(description="base64 PNG, same for P(male)")
    legend: dict[str, str] = Field(description="how to read each overlay (keys age, p_male)")
    batch_size: int = Field(
        description="rows of the ONNX Runtime batch that computed this "
        "(grid² + 1, plus any requests that shared it)",
        examples=[65],
    )
    timings_ms: Timings


class ItemError(BaseModel):
    status: int = Field(examples=[415])
    code: str = Field(examples=["unsupported_media_type"])
    message: str = Field(examples=["not a supported image (found PDF header)"])


class BatchItem(BaseModel):
    """One file's outcome; prediction fields are present when ok, `error` when not."""

    model_config = ConfigDict(protected_namespaces=())

    index: int
    filename: str | None = None
    ok: bool
    age_years: float | None = None
    sex: Literal["female", "male"] | None = None
    p_male: float | None = None
    age_interval_90: list[float] | None = None
    age_intervals: dict[str, list[float]] | None = None
    timings_ms: Timings | None = None
    warnings: list[InputWarning] = []
    error: ItemError | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "cxr-age-sex", "version": "1.0.0"},
                    "results": [
                        {
                            "index": 0,
                            "filename": "a.png",
                            "ok": True,
                            "age_years": 61.0,
                            "sex": "female",
                            "p_male": 0.12,
                            "timings_ms": {
                                "preprocess": 3.0,
                                "queue": 0.5,
                                "inference": 1.4,
                                "total": 5.2,
                            },
                            "warnings": [],
                        },
                        {
                            "index": 1,
                            "filename": "b.pdf",
                            "ok": False,
                            "error": {
                                "status": 415,
                                "code": "unsupported_media_type",
                                "message": (
                                    "not a supported image (found pdf); send PNG, JPEG, TIFF, "
                                    "BMP, WebP or DICOM"
                                ),
                            },
                        },
                    ],
                }
            ]
        },
    )

    model: ModelRef
    results: list[BatchItem]


class ErrorBody(BaseModel):
    """Every error response."""

    detail: str = Field(examples=["image is 40000×40000 = 1600.0 MP; limit is 50 MP"])
    code: str = Field(examples=["image_too_large"])


class Status(BaseModel):
    status: str = Field(examples=["ok"])
    model: ModelRef | None = None


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses."""
    return {code: {"model": ErrorBody} for code in codes}


_BINARY = {"type": "string", "format": "binary"}


def upload_body(
    description: str, raw_types: tuple[str, ...], fields: dict[str, str] | None = None
) -> dict[str, Any]:
    """OpenAPI request body of an upload route: multipart field `file` (plus optional string form
    fields, name → description) or the file itself as the raw body in one of `raw_types`."""
    properties = {
        "file": {**_BINARY, "description": description},
        **{name: {"type": "string", "description": text} for name, text in (fields or {}).items()},
    }
    multipart = {"schema": {"type": "object", "required": ["file"], "properties": properties}}
    raw = {media_type: {"schema": dict(_BINARY)} for media_type in raw_types}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": multipart, **raw}}}


UPLOAD_BODY = upload_body(
    "PNG, JPEG, TIFF, BMP, WebP or DICOM",
    ("application/octet-stream", "image/png", "application/dicom"),
)

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "up to MAX_BATCH_FILES images; results keep this order",
                        }
                    },
                }
            },
        },
    }
}
