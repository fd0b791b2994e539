"""Fixtures every suite may use: the tiny real ONNX model (tests/support/models.py) as a
MODEL_DIR, built once per session, and in-thread API servers stopped after each test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Imported inside the fixtures: suites that need neither (containers, cards, training) start
# without loading ONNX Runtime or the service stack.
if TYPE_CHECKING:
    from service.settings import Settings
    from tests.support.servers import RunningServer


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and its card: age = 0.3·mean + 10, p_male = sigmoid((mean − 100)/20)."""
    from tests.support.models import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def faulty_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, except that ORT raises on bright inputs (max pixel over 250)."""
    from tests.support.models import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("faulty"), faulty=True)


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], RunningServer]]:
    """Factory: start a server with the given Settings; all are stopped after the test."""
    from tests.support.servers import RunningServer

    servers: list[RunningServer] = []

    def start(settings: Settings) -> RunningServer:
        server = RunningServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright (skips when either is missing)."""
    from tests.support.browser import CHROMIUM, require_playwright

    sync_api = require_playwright()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield chromium
        chromium.close()
