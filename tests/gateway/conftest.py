"""Fixtures: a real inference API subprocess serving the committed model, apps pointed at it,
mock transports for failure paths, a live gateway server and a headless browser on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway_flask import create_app
from gateway_flask.settings import Settings
from tests.support.paths import MODELS, REPO
from tests.support.procs import ServerProcess

SECRET = "test-secret-key-0123456789"


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python -m service` on a free loopback port with the committed model: (url, log file)."""
    # GATEWAY_TEST_MODEL_DIR points the tests at another model directory (e.g. a fresh export).
    model_dir = Path(os.environ.get("GATEWAY_TEST_MODEL_DIR") or MODELS)
    missing = [
        str(p)
        for p in (REPO / "service/__main__.py", model_dir / "model.onnx", model_dir / "model.json")
        if not p.exists()
    ]
    if missing:
        pytest.fail(f"the real API needs {', '.join(missing)}")
    api = ServerProcess(
        "service",
        log=tmp_path_factory.mktemp("api") / "api.log",
        env={
            "MODEL_DIR": str(model_dir),
            "LOG_LEVEL": "DEBUG",
            "ORT_INTRA_OP_THREADS": "1",
            "PREPROCESS_THREADS": "1",
        },
    )
    with api.start(timeout_s=90):
        yield api.url, api.log


@pytest.fixture(scope="session")
def api_url(api_server: tuple[str, Path]) -> str:
    return api_server[0]


@pytest.fixture()
def app(api_url: str) -> Iterator[Flask]:
    """The web app pointed at the real API."""
    app = create_app(Settings(api_url=api_url, secret_key=SECRET))
    yield app
    app.extensions["api_client"].close()


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


MockHandler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture()
def mock_app() -> Callable[..., tuple[Flask, list[httpx.Request]]]:
    """Build an app whose API is `handler` (failure paths only); also returns the requests seen."""

    def build(handler: MockHandler, **overrides: object) -> tuple[Flask, list[httpx.Request]]:
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if request.url.path == "/readyz":
                return httpx.Response(200, json={"status": "ready"})
            return handler(request)

        settings = Settings(api_url="http://api.test", secret_key=SECRET, **overrides)  # type: ignore[arg-type]
        return create_app(settings, transport=httpx.MockTransport(record)), seen

    return build


@pytest.fixture(scope="session")
def live_gateway(
    api_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`python -m gateway_flask` (gunicorn) on a free loopback port: (url, log file)."""
    web = ServerProcess(
        "gateway_flask",
        log=tmp_path_factory.mktemp("web") / "web.log",
        ready_path="/healthz",
        env={
            "API_URL": api_url,
            "GATEWAY_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024),
            "GATEWAY_LOG_LEVEL": "DEBUG",
            "GATEWAY_THREADS": "4",
        },
    )
    with web.start(timeout_s=30):
        yield web.url, web.log


@pytest.fixture()
def page(browser, live_gateway) -> Iterator[object]:
    """A fresh page on the live web app that records console errors (CSP violations show up
    there)."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=live_gateway[0])
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()
