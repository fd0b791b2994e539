"""FastAPI dependencies: the per-app Engine and Lifecycle from the lifespan state.

Async on purpose: FastAPI runs plain `def` dependencies in a worker thread, one hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.engine import Engine
from service.errors import ModelNotReady
from service.lifecycle import Lifecycle


async def get_engine(request: Request) -> Engine:
    """The running engine; 503 before the lifespan has started it."""
    engine = getattr(request.state, "engine", None)
    if engine is None:
        raise ModelNotReady("not ready: model is loading or warming up")
    return engine


async def get_lifecycle(request: Request) -> Lifecycle | None:
    """The lifecycle, or None before start-up."""
    return getattr(request.state, "lifecycle", None)


EngineDep = Annotated[Engine, Depends(get_engine)]
LifecycleDep = Annotated[Lifecycle | None, Depends(get_lifecycle)]
