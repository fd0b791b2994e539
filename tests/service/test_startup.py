"""Start-up: settings validation, refusing a model that disagrees with its card, readiness."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from service.app import create_app
from service.lifecycle import Lifecycle
from service.model import ModelMismatch, load_model
from service.settings import ConfigError, load_settings
from tests.support.models import make_model_dir, write_card
from tests.support.paths import REPO


def run_service(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m service` to completion (it must exit by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "HOST": "127.0.0.1", "PORT": "0", **env},
    )


def test_bad_setting_named_with_value(monkeypatch) -> None:
    monkeypatch.setenv("MAX_BATCH_SIZE", "lots")
    with pytest.raises(ConfigError, match=r"Config 'MAX_BATCH_SIZE' has value 'lots'"):
        load_settings()
    monkeypatch.setenv("MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("API_KEYS", "k1, k2")
    s = load_settings()
    assert s.max_batch_size == 8 and s.api_keys == ["k1", "k2"]


def test_entry_point_refuses_bad_setting() -> None:
    result = run_service({"MAX_WAIT_MS": "-5"})
    assert result.returncode == 2
    assert "MAX_WAIT_MS" in result.stderr and "-5" in result.stderr


def test_tampered_model_refuses_to_start(tmp_path) -> None:
    model_dir = make_model_dir(tmp_path / "m")
    with (model_dir / "model.onnx").open("ab") as fh:
        fh.write(b"\x00")  # one extra byte: same graph for ONNX, different file
    with pytest.raises(ModelMismatch, match="sha256 of .*model.onnx is [0-9a-f]{64}; card"):
        load_model(model_dir / "model.onnx", model_dir / "model.json")
    result = run_service({"MODEL_DIR": str(model_dir)})
    assert result.returncode == 3
    assert "refusing to start" in result.stderr and "sha256" in result.stderr


@pytest.mark.parametrize(
    "change,needle",
    [
        (
            {"input": {"name": "pixels", "shape": [None, 64, 64, 1], "dtype": "float32"}},
            "model input is named 'image'; card says 'pixels'",
        ),
        (
            {"input": {"name": "image", "shape": [None, 32, 32, 1], "dtype": "float32"}},
            "model input shape is [None, 64, 64, 1]; card says [None, 32, 32, 1]",
        ),
        (
            {"input": {"name": "image", "shape": [None, 64, 64, 1], "dtype": "uint8"}},
            "model input dtype is float32; card says uint8",
        ),
        ({"outputs": [{"name": "age"}, {"name": "gender"}]}, "card output 'gender'"),
    ],
)
def test_card_mismatch_refused(tmp_path, change, needle) -> None:
    model_dir = make_model_dir(tmp_path / "m")
    write_card(model_dir, **change)
    with pytest.raises(ModelMismatch) as info:
        load_model(model_dir / "model.onnx", model_dir / "model.json")
    assert needle in str(info.value)


def test_missing_files_refused(tmp_path) -> None:
    with pytest.raises(ModelMismatch, match="model card .* not found"):
        load_model(tmp_path / "model.onnx", tmp_path / "model.json")
    model_dir = make_model_dir(tmp_path / "m")
    shutil.copy(model_dir / "model.json", tmp_path / "model.json")
    with pytest.raises(ModelMismatch, match="model file .* not found"):
        load_model(tmp_path / "model.onnx", tmp_path / "model.json")


def test_readiness_503_then_200_then_503(settings_for) -> None:
    lifecycle = Lifecycle()
    app = create_app(settings_for(), lifecycle=lifecycle)

    async def main() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            statuses.append((await client.get("/readyz")).status_code)  # lifespan not started
            statuses.append((await client.get("/v2/health/ready")).status_code)
            statuses.append((await client.post("/v1/predict", content=b"x")).status_code)
        async with app.router.lifespan_context(app) as state:
            # ASGITransport does not pass lifespan state: hand it over as uvicorn would
            live_transport = httpx.ASGITransport(app=_with_state(app, state))
            async with httpx.AsyncClient(transport=live_transport, base_url="http://t") as live:
                statuses.append((await live.get("/readyz")).status_code)
                statuses.append((await live.get("/v2/health/ready")).status_code)
                lifecycle.begin_drain()
                statuses.append((await live.get("/readyz")).status_code)
                assert "draining" in (await live.get("/readyz")).json()["detail"]
                statuses.append((await live.get("/v2/health/ready")).status_code)
        return statuses

    assert asyncio.run(main()) == [503, 503, 503, 200, 200, 503, 503]


def _with_state(app, state):
    """ASGI wrapper that injects lifespan state into each request scope (what uvicorn does)."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "state": dict(state)}
        await app(scope, receive, send)

    return wrapped


def test_objects_alive_after_warm_up_are_frozen_out_of_the_collector(serve, settings_for) -> None:
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    srv = serve(settings_for())
    assert httpx.get(f"{srv.url}/readyz").status_code == 200
    assert gc.get_freeze_count() > 10_000  # modules, schemas, the model: never walked again
    gc.unfreeze()
