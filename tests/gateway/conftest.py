"""Fixtures: a real inference API subprocess serving the committed model, apps pointed at it,
mock transports for failure paths, sample images and a live gateway server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway_flask import create_app
from gateway_flask.settings import Settings
from tests.gateway.helpers import REPO, free_port, stop, wait_http

SECRET = "test-secret-key-0123456789"


@pytest.fixture(scope="session")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python -m service` on a free loopback port with the committed model: (url, log file)."""
    # GATEWAY_TEST_MODEL_DIR points the tests at another model directory (e.g. a fresh export).
    model_dir = Path(os.environ.get("GATEWAY_TEST_MODEL_DIR") or REPO / "models")
    missing = [str(p) for p in (REPO / "service/__main__.py", model_dir / "model.onnx",
                                model_dir / "model.json") if not p.exists()]
    if missing:
        pytest.fail(f"the real API needs {', '.join(missing)}")
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "MODEL_DIR": str(model_dir),
           "LOG_LEVEL": "DEBUG", "ORT_INTRA_OP_THREADS": "1", "PREPROCESS_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc, log)
        yield url, log
    finally:
        stop(proc)


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
def live_gateway(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`python -m gateway_flask` (gunicorn) on a free loopback port: (url, log file)."""
    port = free_port()
    log = tmp_path_factory.mktemp("web") / "web.log"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "API_URL": api_url,
           "GATEWAY_MAX_UPLOAD_BYTES": str(4 * 1024 * 1024), "GATEWAY_LOG_LEVEL": "DEBUG",
           "GATEWAY_THREADS": "4", "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway_flask"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, log, timeout_s=30)
        yield url, log
    finally:
        stop(proc)
