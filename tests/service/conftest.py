"""Fixtures for the API tests: images and real uvicorn servers on the tiny model
(tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.images import encode, xray_array
from tests.support.servers import RunningServer, server_settings


@pytest.fixture
def xray_png() -> Callable[..., bytes]:
    """Factory: PNG bytes of a synthetic X-ray (kwargs go to xray_array)."""
    return lambda **kw: encode(xray_array(**kw))


@pytest.fixture
def settings_for(model_dir: Path) -> Callable[..., Settings]:
    """Factory: test Settings on the tiny model, overridable per test."""

    def make(**overrides: object) -> Settings:
        return server_settings(**{"model_dir": model_dir, **overrides})

    return make


@pytest.fixture
def server(
    serve: Callable[[Settings], RunningServer], settings_for: Callable[..., Settings]
) -> RunningServer:
    """A default server on the tiny model."""
    return serve(settings_for())
