"""Access and integrity on a real process: API keys from the environment, configurable open paths,
no way around the check, the web app's key; tampered models refused; file names never logged."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest

from gateway_flask import create_app as create_web_app
from gateway_flask.settings import Settings as WebSettings
from service.model import ModelMismatch, load_model
from tests.support.images import encode, xray
from tests.support.loadgen import SECRET_NAME
from tests.support.models import make_model_dir, write_card

KEYS = "k-live-0123456789abcdef,k-rotated-fedcba9876543210"
IMAGE = encode(xray(seed=8), "PNG")


@pytest.fixture
def secured(start_service):
    # only liveness stays open: readiness and metrics need a key too
    return start_service(API_KEYS=KEYS, AUTH_OPEN_PATHS="/healthz")


def test_keys_and_open_paths_from_the_environment(secured) -> None:
    url = secured.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    for path in ("/readyz", "/metrics", "/v1/models", "/openapi.json", "/docs", "/v2/health/ready"):
        assert httpx.get(f"{url}{path}").status_code == 401, path
    for key in KEYS.split(","):
        for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
            assert httpx.get(f"{url}/readyz", headers=headers).status_code == 200
            r = httpx.post(
                f"{url}/v1/predict", headers=headers, files={"file": (f"{SECRET_NAME}.png", IMAGE)}
            )
            assert r.status_code == 200, r.text


def test_every_refusal_is_the_same_401_saying_nothing(secured) -> None:
    key = KEYS.split(",")[0]
    attempts = [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": key.upper()},
        {"X-API-Key": key[:-1]},
        {"X-API-Key": key + "x"},
        {"Authorization": f"Basic {key}"},
        {"Authorization": key},
        {"Authorization": f"Bearer {key[:8]}"},
        {"Authorization": "Bearer"},
        {"X-Api-Key": f"{key},{key}"},
    ]
    bodies = set()
    for headers in attempts:
        r = httpx.post(f"{secured.url}/v1/predict", headers=headers, content=IMAGE)
        assert r.status_code == 401, headers
        bodies.add((r.content, r.headers["www-authenticate"]))
    assert len(bodies) == 1  # the same answer whatever was wrong: nothing to learn from it
    body = json.loads(next(iter(bodies))[0])
    assert body["detail"] == "unauthorized" and key not in json.dumps(body)


def test_no_way_around_the_key(secured) -> None:
    host, port = secured.url.removeprefix("http://").split(":")
    key = KEYS.split(",")[0]
    for target in (
        "/healthz/../v1/models",
        "/healthz/",
        "//v1/models",
        "/v1/models?p=/healthz",
        "/v1/models#/healthz",
        "/v1/%6dodels",
        f"/v1/models?api_key={key}",
    ):
        status = asyncio.run(raw_get(host, int(port), target))
        assert status in (401, 404), (target, status)  # never 200 without a key
    r = httpx.get(f"{secured.url}/v1/models", cookies={"api_key": key})
    assert r.status_code == 401


async def raw_get(host: str, port: int, target: str) -> int:
    """One GET with the request target exactly as given (no client-side URL normalisation)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


def test_web_app_uses_its_key_against_the_real_api(secured) -> None:
    for api_key, expected in ((KEYS.split(",")[1], 200), ("", 502), ("wrong", 502)):
        web = create_web_app(WebSettings(api_url=secured.url, secret_key="k" * 32, api_key=api_key))
        try:
            r = web.test_client().post("/api/predict", data=IMAGE, content_type="image/png")
        finally:
            web.extensions["api_client"].close()
        assert r.status_code == expected, (api_key, r.get_data(as_text=True))
        if expected == 502:
            assert "GATEWAY_API_KEY" in r.json["detail"]


@pytest.mark.parametrize(
    "tamper",
    ["swapped for another valid model", "truncated", "card's sha256 edited", "card without sha256"],
)
def test_tampered_model_or_card_is_refused(tmp_path: Path, tamper: str) -> None:
    model_dir = make_model_dir(tmp_path / "m")
    model, card = model_dir / "model.onnx", model_dir / "model.json"
    if tamper == "swapped for another valid model":
        other = make_model_dir(tmp_path / "other", faulty=True)
        shutil.copy(other / "model.onnx", model)  # loads fine in ORT; not the model carded
    elif tamper == "truncated":
        model.write_bytes(model.read_bytes()[:-100])
    elif tamper == "card's sha256 edited":
        write_card(model_dir, sha256="0" * 64)
    else:
        data = json.loads(card.read_text())
        del data["sha256"]
        card.write_text(json.dumps(data))
    with pytest.raises(ModelMismatch, match="sha256"):
        load_model(model, card)
