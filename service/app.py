"""The FastAPI application: create_app() wires settings, model, batcher, routes and handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from cxr.errors import ImageError
from service import fastlane, routes_v1, routes_v2, routes_verify
from service.deps import ApiKeyAuth
from service.docs import add_docs
from service.engine import Engine
from service.errors import ApiError, Overloaded, Unauthorized, status_of
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.middleware import ServiceMiddleware
from service.model import ModelMismatch, load_model
from service.settings import Settings, load_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """Predicts age (years) and sex (P(male)) from a chest X-ray.
Research demo, not for clinical use. Send PNG, JPEG, TIFF, BMP, WebP or DICOM.

    curl -F file=@xray.png http://localhost:8000/v1/predict
"""


class State(TypedDict):
    engine: Engine
    lifecycle: Lifecycle


def _error(
    status: int, code: str, detail: str, request: Request, headers: dict[str, str] | None = None
) -> JSONResponse:
    return error_body(status, code, detail, request.url.path, headers)


def error_body(
    status: int, code: str, detail: str, path: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Every error answer: {"detail", "code"} (+ "error" on /v2 for OIP clients)."""
    body = {"detail": detail, "code": code}
    if path.startswith("/v2"):
        body["error"] = detail  # OIP v2 clients (tritonclient) read "error"
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: ImageError | ApiError, path: str, metrics: Metrics) -> JSONResponse:
    """The answer to a known error (its status, code and message), counted in the metrics."""
    status = status_of(exc)
    metrics.refused(status)
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(int(exc.retry_after_s))}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    if status >= 500:
        logger.warning("%s %s: %s", status, exc.code, exc.message)
    return error_body(status, exc.code, exc.message, path, headers)


def create_app(settings: Settings | None = None, *, lifecycle: Lifecycle | None = None) -> FastAPI:
    """Build the API; the model is loaded, checked and warmed up when the lifespan starts."""
    settings = settings or load_settings()
    lifecycle = lifecycle or Lifecycle()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        try:
            model = load_model(
                settings.model_path,
                settings.card_path,
                providers=settings.ort_providers,
                intra_op_threads=settings.ort_threads(),
            )
            engine = Engine(settings, model, metrics, lifecycle)
        except ModelMismatch as exc:
            logger.error("refusing to start: %s", exc)
            raise
        await engine.start()
        # Everything alive now (modules, schemas, the model) lives as long as the process: out of
        # the collector's reach, a full collection no longer walks it (one took 14–16 ms here).
        gc.freeze()
        logger.info(
            "serving %s %s: max_batch_size=%d max_wait_ms=%g max_queue=%d",
            model.name,
            model.version,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
        )
        try:
            yield {"engine": engine, "lifecycle": lifecycle}
        finally:
            await engine.stop()
            logger.info("stopped")

    # With API_KEYS set every route needs a key (a security dependency: OpenAPI documents it),
    # except AUTH_OPEN_PATHS. The docs routes are ordinary routes so the key guards them too.
    checker = ApiKeyAuth(settings.api_keys, settings.auth_open_paths) if settings.api_keys else None
    auth = [Depends(checker)] if checker is not None else []
    app = _ServiceApp(
        title="Chest X-ray age & sex API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=auth,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.metrics = metrics
    app.include_router(routes_v1.router)
    app.include_router(routes_v2.router)
    app.include_router(routes_verify.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    add_docs(app)  # /docs and /redoc with their assets served from here: they work offline

    @app.exception_handler(ImageError)
    @app.exception_handler(ApiError)
    async def known_error(request: Request, exc: ImageError | ApiError) -> JSONResponse:
        return error_response(exc, request.url.path, metrics)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.refused(400)
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, "bad_request", f"invalid request: {problems}", request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if exc.status_code != 404 else f"no such endpoint: {request.url.path}"
        return _error(exc.status_code, code, str(detail), request, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal_error", f"internal error: {type(exc).__name__}", request)

    idle_s = settings.upload_idle_timeout_s
    if settings.fast_lane:
        # in front of FastAPI's own layers (error, telemetry and body-limit middleware, routing)
        lane = fastlane.PredictLane(metrics, checker)
        app.lane = ServiceMiddleware(lane, metrics=metrics, idle_s=idle_s)
    app.add_middleware(ServiceMiddleware, metrics=metrics, idle_s=idle_s)
    return app


class _ServiceApp(FastAPI):
    """FastAPI, with `POST /v1/predict` taken before its middleware stack when the fast lane is
    on (service/fastlane.py): the lane answers every error itself, so the stack's layers would
    only add Python to every body chunk and response message of the busiest endpoint."""

    lane: ASGIApp | None = None
    metrics: Metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane is not None and scope["type"] == "http" and fastlane.PredictLane.takes(scope):
            scope["app"] = self
            await self.lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
