"""The service's own REST API: /v1/predict, /v1/predict/batch, /v1/preview, /v1/models, health."""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from cxr.errors import ImageError, ImageTooLarge
from service.deps import EngineDep, LifecycleDep, ReadyEngineDep
from service.engine import Engine, Inference
from service.errors import ApiError, BadRequest, TooManyFiles, status_of
from service.explain import legend as explain_legend
from service.intervals import parse_levels
from service.schemas import (
    BATCH_BODY,
    UPLOAD_BODY,
    BatchItem,
    BatchResponse,
    Explanation,
    ItemError,
    ModelRef,
    Prediction,
    Status,
    error_responses,
)
from service.uploads import Upload, is_multipart, read_body, read_multipart, upload_body_limit

router = APIRouter()

_UPLOAD_ERRORS = error_responses(400, 408, 413, 415, 422, 429, 500, 503, 504)
# More age-interval levels than the default 90 %: the card's levels, e.g. 0.8,0.9,0.95.
IntervalsQuery = Annotated[
    str | None,
    Query(
        description="extra age-interval levels from the model card, e.g. `0.8,0.9,0.95`; "
        "answered as `age_intervals` {level: [low, high]}",
        examples=["0.8,0.9,0.95"],
    ),
]


async def read_one_file(request: Request, limit: int) -> bytes:
    """The single uploaded file: multipart field `file`, or the raw body."""
    if not is_multipart(request):
        return await read_body(request, limit)
    parts = await read_multipart(
        request, per_file_limit=limit, total_limit=upload_body_limit(limit), max_parts=16
    )
    files = [p for p in parts if p.field == "file"]
    if len(files) != 1:
        found = sorted({p.field for p in parts})
        raise BadRequest(
            f"expected exactly one multipart field 'file', got {len(files)} "
            f"(fields present: {found})"
        )
    return _checked(files[0], limit)


def _checked(part: Upload, limit: int) -> bytes:
    if part.size > limit:
        raise ImageTooLarge(
            f"file is {part.size / 1e6:.3g} MB; limit is {limit / 1e6:.3g} MB (MAX_UPLOAD_BYTES)"
        )
    return part.data


def prediction_fields(engine: Engine, result: Inference, levels: list[str]) -> dict[str, Any]:
    """The prediction part of every answer: age, sex, P(male), intervals, warnings."""
    fields: dict[str, Any] = {
        "age_years": result.age,
        "sex": result.sex,
        "p_male": result.p_male,
        "warnings": result.warnings,
    }
    if engine.interval is not None:
        fields["age_interval_90"] = engine.interval.around(result.age)
        if levels:
            fields["age_intervals"] = {lv: engine.interval.around(result.age, lv) for lv in levels}
    return fields


def _model_ref(engine: Engine) -> ModelRef:
    return ModelRef(**engine.model_ref)


@router.post(
    "/v1/predict",
    response_model=Prediction,
    openapi_extra=UPLOAD_BODY,
    response_model_exclude_none=True,
    responses=_UPLOAD_ERRORS,
    summary="Predict age and sex from one image",
)
async def predict(
    request: Request, engine: ReadyEngineDep, intervals: IntervalsQuery = None
) -> Prediction:
    """Age in years and P(male) for one chest X-ray (multipart `file` or the raw file as body)."""
    levels = parse_levels(intervals, engine.interval)
    engine.check_capacity()
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    result = await engine.predict(data)
    return Prediction(
        **prediction_fields(engine, result, levels),
        model=_model_ref(engine),
        timings_ms=result.timings_ms,
    )


@router.post(
    "/v1/predict/batch",
    response_model=BatchResponse,
    openapi_extra=BATCH_BODY,
    response_model_exclude_none=True,
    responses=error_responses(400, 408, 413, 503),
    summary="Predict for many images",
)
async def predict_batch(
    request: Request, engine: ReadyEngineDep, intervals: IntervalsQuery = None
) -> BatchResponse:
    """Up to MAX_BATCH_FILES images in field `files`; results in request order, errors per item."""
    levels = parse_levels(intervals, engine.interval)
    settings = engine.settings
    if not is_multipart(request):
        raise BadRequest("send multipart/form-data with one or more 'files' fields")
    parts = await read_multipart(
        request,
        per_file_limit=settings.max_upload_bytes,
        total_limit=settings.max_batch_upload_bytes,
        max_parts=settings.max_batch_files + 16,
        limit_name="MAX_BATCH_UPLOAD_BYTES",
        parts_name="MAX_BATCH_FILES + 16 form fields",
    )
    files = [p for p in parts if p.field == "files"]
    if not files:
        raise BadRequest(
            f"no multipart field 'files' (fields present: {sorted({p.field for p in parts})})"
        )
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(
            f"{len(files)} files; limit is {settings.max_batch_files} (MAX_BATCH_FILES)"
        )

    async def one(index: int, part: Upload) -> BatchItem:
        try:
            result = await engine.predict(_checked(part, settings.max_upload_bytes))
        except (ImageError, ApiError) as exc:
            status = status_of(exc)
            engine.metrics.refused(status)
            return BatchItem(
                index=index,
                filename=part.filename,
                ok=False,
                error=ItemError(status=status, code=exc.code, message=exc.message),
            )
        return BatchItem(
            index=index,
            filename=part.filename,
            ok=True,
            **prediction_fields(engine, result, levels),
            timings_ms=result.timings_ms,
        )

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))
    return BatchResponse(model=_model_ref(engine), results=list(results))


@router.post(
    "/v1/explain",
    response_model=Explanation,
    openapi_extra=UPLOAD_BODY,
    response_model_exclude_none=True,
    responses=_UPLOAD_ERRORS,
    summary="Where the model looked (occlusion sensitivity)",
)
async def explain(
    request: Request, engine: ReadyEngineDep, intervals: IntervalsQuery = None
) -> Explanation:
    """Grey out each patch of a grid in turn (one batch, below single predictions in priority)."""
    levels = parse_levels(intervals, engine.interval)
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    ex = await engine.explain(data)
    return Explanation(
        **prediction_fields(engine, ex.inference, levels),
        model=_model_ref(engine),
        grid=ex.grid,
        patch_px=ex.patch_px,
        delta_age=np.round(ex.delta_age, 4).tolist(),
        delta_p_male=np.round(ex.delta_p_male, 5).tolist(),
        overlay_age_png=base64.b64encode(ex.overlay_age_png).decode(),
        overlay_p_male_png=base64.b64encode(ex.overlay_p_male_png).decode(),
        legend=explain_legend(ex.delta_age, ex.delta_p_male),
        batch_size=ex.batch_size,
        timings_ms=ex.inference.timings_ms,
    )


@router.post(
    "/v1/preview",
    openapi_extra=UPLOAD_BODY,
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "cleaned grey PNG"},
        **error_responses(400, 408, 413, 415, 422, 429, 503),
    },
    summary="The cleaned image the model sees, as PNG",
)
async def preview(request: Request, engine: ReadyEngineDep) -> Response:
    """Borders cropped, grey, longer side ≤ 256 px (thumbnails of DICOM/TIFF for the web app)."""
    engine.check_capacity()
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    return Response(await engine.preview_png(data), media_type="image/png")


@router.get("/v1/models", summary="The model card")
async def model_card(engine: EngineDep) -> JSONResponse:
    """The served model's card (model.json): input spec, preprocessing, metrics, intended use."""
    return JSONResponse(engine.model.card.public())


@router.get("/healthz", response_model=Status, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> Status:
    """200 while the process runs."""
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=error_responses(503), summary="Readiness")
async def readyz(lifecycle: LifecycleDep, request: Request) -> Status | JSONResponse:
    """200 once the model is loaded and warmed up; 503 before that and while draining."""
    if lifecycle is None or not lifecycle.ready:
        reason = lifecycle.reason() if lifecycle else "model is loading or warming up"
        return JSONResponse(
            {"detail": f"not ready: {reason}", "code": "not_ready"}, status_code=503
        )
    return Status(status="ready", model=_model_ref(request.state.engine))
