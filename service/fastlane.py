"""`POST /v1/predict` without FastAPI's routing, dependency solving and response validation.

The one endpoint that carries the traffic is taken in front of FastAPI's middleware stack
(service/app.py) and answered inside the service middleware (service/middleware.py) by the
same steps, in the same order and with the same errors as the FastAPI route in routes_v1.py,
which stays registered for OpenAPI and for every request the lane does not take (another
method, a `root_path`). Measured on 2 cores: ~1 CPU ms less per request
on the event loop's thread (docs/performance.md). tests/service/test_fastlane.py holds the two
paths to the same answers, byte for byte, on success and on every error.

Order, as FastAPI's: API key (global dependency) → engine ready (route dependency) →
`intervals` query → admission (429 before the body is read) → body → prediction.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cxr.errors import ImageError
from service.deps import ApiKeyAuth
from service.engine import Engine
from service.errors import ApiError, ModelNotReady
from service.intervals import parse_levels
from service.metrics import Metrics
from service.routes_v1 import prediction_fields, read_one_file
from service.schemas import ModelRef, Prediction

logger = logging.getLogger(__name__)

PATH = "/v1/predict"
_SERIALIZER = Prediction.__pydantic_serializer__  # what FastAPI's dump_json fast path uses
_ROUTE = SimpleNamespace(path=PATH)  # scope["route"]: the middleware labels metrics by its path


class PredictLane:
    """An ASGI handler for exactly `POST /v1/predict` (see `takes`)."""

    def __init__(self, metrics: Metrics, auth: ApiKeyAuth | None) -> None:
        self.metrics = metrics
        self.auth = auth

    @staticmethod
    def takes(scope: Scope) -> bool:
        return scope["path"] == PATH and scope["method"] == "POST" and not scope.get("root_path")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from service.app import error_body, error_response  # app imports this module

        scope["route"] = _ROUTE
        try:
            response = await self._predict(Request(scope, receive))
        except (ImageError, ApiError) as exc:
            response = error_response(exc, PATH, self.metrics)
        except Exception as exc:  # as the last-resort handler of the app
            logger.exception("unhandled error on %s", PATH)
            response = error_body(
                500, "internal_error", f"internal error: {type(exc).__name__}", PATH
            )
        await response(scope, receive, send)

    async def _predict(self, request: Request) -> Response:
        headers = request.headers
        if self.auth is not None:
            scheme, credentials = get_authorization_scheme_param(headers.get("authorization"))
            bearer = credentials if scheme.lower() == "bearer" and credentials else None
            self.auth.verify(PATH, headers.get("x-api-key"), bearer)
        engine: Engine | None = request.scope.get("state", {}).get("engine")
        if engine is None:
            raise ModelNotReady("not ready: model is loading or warming up")
        engine.check_ready()
        query = request.scope.get("query_string")
        intervals = QueryParams(query).get("intervals") if query else None
        levels = parse_levels(intervals, engine.interval)
        engine.check_capacity()
        data = await read_one_file(request, engine.settings.max_upload_bytes)
        result = await engine.predict(data)
        answer = Prediction(
            **prediction_fields(engine, result, levels),
            model=ModelRef(**engine.model_ref),
            timings_ms=result.timings_ms,
        )
        body = _SERIALIZER.to_json(answer, by_alias=True, exclude_none=True)
        return Response(body, media_type="application/json")
