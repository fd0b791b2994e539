"""FastAPI dependencies: the per-app Engine (checked ready once per request), the Lifecycle, and
API-key authentication as a security dependency (so OpenAPI documents it).

Async on purpose: FastAPI runs plain `def` dependencies in a worker thread, one hop per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.engine import Engine
from service.errors import ModelNotReady, Unauthorized
from service.lifecycle import Lifecycle


async def get_engine(request: Request) -> Engine:
    """The running engine; 503 before the lifespan has started it."""
    engine = getattr(request.state, "engine", None)
    if engine is None:
        raise ModelNotReady("not ready: model is loading or warming up")
    return engine


async def get_ready_engine(request: Request) -> Engine:
    """The engine, refusing with 503 before warm-up (the request's one readiness check)."""
    engine = await get_engine(request)
    engine.check_ready()
    return engine


async def get_lifecycle(request: Request) -> Lifecycle | None:
    """The lifecycle, or None before start-up."""
    return getattr(request.state, "lifecycle", None)


EngineDep = Annotated[Engine, Depends(get_engine)]
ReadyEngineDep = Annotated[Engine, Depends(get_ready_engine)]
LifecycleDep = Annotated[Lifecycle | None, Depends(get_lifecycle)]

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key (one of API_KEYS)"
)
_bearer = HTTPBearer(auto_error=False, description="API key as `Authorization: Bearer <key>`")


class ApiKeyAuth:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; 401 without saying why.

    Added to the app as a global dependency when API_KEYS is set; AUTH_OPEN_PATHS pass without a
    key (probes, metrics). Compared in constant time against every key.
    """

    def __init__(self, keys: list[str], open_paths: list[str]) -> None:
        self.keys = [k.encode() for k in keys]
        self.open_paths = set(open_paths)

    async def __call__(
        self,
        request: Request,
        api_key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> None:
        self.verify(request.url.path, api_key, bearer.credentials if bearer else None)

    def verify(self, path: str, api_key: str | None, bearer: str | None) -> None:
        """Raise Unauthorized unless `path` is open or a presented key is one of the keys."""
        if path in self.open_paths:
            return
        presented = (api_key or bearer or "").strip().encode()
        ok = False
        for key in self.keys:  # compare against every key so timing says nothing about which
            ok |= hmac.compare_digest(presented, key)
        if not (ok and presented):
            raise Unauthorized("unauthorized")
