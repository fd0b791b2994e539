"""The service's own REST API: /v1/predict, /v1/predict/batch, /v1/preview, /v1/models, health."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from service.deps import EngineDep, LifecycleDep
from service.errors import BadRequest, ImageTooLarge, ServiceError, TooManyFiles
from service.intervals import add_intervals, parse_levels
from service.schemas import (
    BATCH_BODY,
    UPLOAD_BODY,
    BatchResponse,
    Explanation,
    Prediction,
    Status,
    error_responses,
)
from service.uploads import MULTIPART_OVERHEAD, Upload, is_multipart, read_body, read_multipart

router = APIRouter()

_UPLOAD_ERRORS = error_responses(400, 408, 413, 415, 422, 429, 500, 503, 504)
# More age-interval levels than the default 90 %: the card's levels, e.g. 0.8,0.9,0.95.
IntervalsQuery = Annotated[str | None, Query(
    description="extra age-interval levels from the model card, e.g. `0.8,0.9,0.95`; "
                "answered as `age_intervals` {level: [low, high]}", examples=["0.8,0.9,0.95"])]


async def read_one_file(request: Request, limit: int) -> bytes:
    """The single uploaded file: multipart field `file`, or the raw body."""
    if not is_multipart(request):
        return await read_body(request, limit)
    parts = await read_multipart(request, per_file_limit=limit,
                                 total_limit=limit + MULTIPART_OVERHEAD, max_parts=16)
    files = [p for p in parts if p.field == "file"]
    if len(files) != 1:
        found = sorted({p.field for p in parts})
        raise BadRequest(f"expected exactly one multipart field 'file', got {len(files)} "
                         f"(fields present: {found})")
    return _checked(files[0], limit)


def _checked(part: Upload, limit: int) -> bytes:
    if part.size > limit:
        raise ImageTooLarge(f"file is {part.size / 1e6:.3g} MB; limit is {limit / 1e6:.3g} MB "
                            "(MAX_UPLOAD_BYTES)")
    return bytes(part.data)


@router.post("/v1/predict", response_model=Prediction, openapi_extra=UPLOAD_BODY,
             response_model_exclude_none=True,
             responses=_UPLOAD_ERRORS, summary="Predict age and sex from one image")
async def predict(request: Request, engine: EngineDep,
                  intervals: IntervalsQuery = None) -> dict[str, Any]:
    """Age in years and P(male) for one chest X-ray (multipart `file` or the raw file as body)."""
    engine.check_ready()
    levels = parse_levels(intervals, engine.interval)
    engine.check_capacity()
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    return add_intervals(await engine.predict_bytes(data), engine.interval, levels)


@router.post("/v1/predict/batch", response_model=BatchResponse, openapi_extra=BATCH_BODY,
             response_model_exclude_none=True,
             responses=error_responses(400, 408, 413, 503), summary="Predict for many images")
async def predict_batch(request: Request, engine: EngineDep,
                        intervals: IntervalsQuery = None) -> dict[str, Any]:
    """Up to MAX_BATCH_FILES images in field `files`; results in request order, errors per item."""
    engine.check_ready()
    levels = parse_levels(intervals, engine.interval)
    settings = engine.settings
    if not is_multipart(request):
        raise BadRequest("send multipart/form-data with one or more 'files' fields")
    try:
        parts = await read_multipart(request, per_file_limit=settings.max_upload_bytes,
                                     total_limit=settings.max_batch_upload_bytes,
                                     max_parts=settings.max_batch_files + 16,
                                     limit_name="MAX_BATCH_UPLOAD_BYTES")
    except BadRequest as exc:
        if "MAX_BATCH_FILES" in exc.message:
            raise TooManyFiles(f"more than {settings.max_batch_files} files; limit is "
                               f"{settings.max_batch_files} (MAX_BATCH_FILES)") from None
        raise
    files = [p for p in parts if p.field == "files"]
    if not files:
        raise BadRequest(f"no multipart field 'files' (fields present: {sorted({p.field for p in parts})})")
    if len(files) > settings.max_batch_files:
        raise TooManyFiles(f"{len(files)} files; limit is {settings.max_batch_files} (MAX_BATCH_FILES)")

    async def one(index: int, part: Upload) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "filename": part.filename}
        try:
            body = await engine.predict_bytes(_checked(part, settings.max_upload_bytes))
        except ServiceError as exc:
            engine.metrics.refused(exc.status_code)
            return {**item, "ok": False, "error": {"status": exc.status_code, "code": exc.code,
                                                    "message": exc.message}}
        body.pop("model")
        return {**item, "ok": True, **add_intervals(body, engine.interval, levels)}

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))
    return {"model": engine.model_ref, "results": results}


@router.post("/v1/explain", response_model=Explanation, openapi_extra=UPLOAD_BODY,
             response_model_exclude_none=True, responses=_UPLOAD_ERRORS,
             summary="Where the model looked (occlusion sensitivity)")
async def explain(request: Request, engine: EngineDep,
                  intervals: IntervalsQuery = None) -> dict[str, Any]:
    """Grey out each patch of a grid in turn (one batch, below single predictions in priority)."""
    engine.check_ready()
    levels = parse_levels(intervals, engine.interval)
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    return add_intervals(await engine.explain_bytes(data), engine.interval, levels)


@router.post("/v1/preview", openapi_extra=UPLOAD_BODY, response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "cleaned grey PNG"},
                        **error_responses(400, 408, 413, 415, 422, 429, 503)},
             summary="The cleaned image the model sees, as PNG")
async def preview(request: Request, engine: EngineDep) -> Response:
    """Borders cropped, grey, longer side ≤ 256 px (thumbnails of DICOM/TIFF for the web app)."""
    engine.check_ready()
    engine.check_capacity()
    data = await read_one_file(request, engine.settings.max_upload_bytes)
    return Response(await engine.preview_png(data), media_type="image/png")


@router.get("/v1/models", summary="The model card")
async def model_card(engine: EngineDep) -> JSONResponse:
    """The served model's card (model.json): input spec, preprocessing, metrics, intended use."""
    return JSONResponse(engine.model.card)


@router.get("/healthz", response_model=Status, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Status, responses=error_responses(503), summary="Readiness")
async def readyz(lifecycle: LifecycleDep, request: Request) -> Any:
    """200 once the model is loaded and warmed up; 503 before that and while draining."""
    if lifecycle is None or not lifecycle.ready:
        reason = lifecycle.reason() if lifecycle else "model is loading or warming up"
        return JSONResponse({"detail": f"not ready: {reason}", "code": "not_ready"}, status_code=503)
    return {"status": "ready", "model": request.state.engine.model_ref}
