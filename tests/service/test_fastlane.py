"""POST /v1/predict answered by the lane (service/fastlane.py) and by the FastAPI route give the
same answers: statuses, headers that matter, and bodies byte for byte (timings aside), on success
and on every refusal the lane can produce. Two real servers on the tiny model, one with
FAST_LANE off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.support.http import RawUpload, scrape
from tests.support.images import encode, slow_png, xray_array
from tests.support.paths import MODELS

KEY = "k-123"
HEADERS_THAT_MATTER = ("content-type", "retry-after", "www-authenticate", "connection")


def answer(r: httpx.Response) -> tuple[int, dict[str, str], object]:
    """Status, the headers that matter, and the body (JSON without timings, else bytes)."""
    headers = {k: r.headers[k] for k in HEADERS_THAT_MATTER if k in r.headers}
    if r.status_code == 200:
        body = r.json()
        body.pop("timings_ms")
        return r.status_code, headers, json.dumps(body, sort_keys=True)
    return r.status_code, headers, r.content


@pytest.fixture
def pair(serve, settings_for) -> Callable[..., tuple[str, str]]:
    """Factory: (lane server URL, FastAPI-route server URL), same settings otherwise."""

    def start(**overrides: object) -> tuple[str, str]:
        lane = serve(settings_for(**overrides))
        route = serve(settings_for(fast_lane=False, **overrides))
        return lane.url, route.url

    return start


def test_same_answers_on_success_and_refusals(pair) -> None:
    lane, route = pair(max_upload_bytes=200_000, model_dir=MODELS)  # its card has intervals
    png = encode(xray_array(seed=5))
    cases: list[dict[str, object]] = [
        {"files": {"file": ("x.png", png)}},
        {"content": png},
        {"content": png, "params": {"intervals": "0.8,0.95"}},
        {"content": png, "params": {"intervals": "0.8", "other": "ignored"}},
        {"content": png, "params": {"intervals": "abc"}},  # 400
        {"content": png, "params": {"intervals": "0.42"}},  # 400: not a level of the card
        {"content": png, "params": [("intervals", "0.8"), ("intervals", "abc")]},  # the last
        {"content": b"%PDF-1.4 not an image"},  # 415
        {"content": b"\x89PNG\r\n\x1a\n" + b"\0" * 64},  # 422: corrupt PNG
        {"content": b""},  # 415: empty
        {"content": b"x" * 300_000},  # 413 from Content-Length
        {"files": {"other": ("x.png", png)}},  # 400: no field 'file'
        {"files": [("file", ("a.png", png)), ("file", ("b.png", png))]},  # 400: two files
        {
            "content": b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=b"},
        },  # 400: part without a name
        {
            "content": b"garbage",
            "headers": {"content-type": "multipart/form-data"},
        },  # 400: no boundary
    ]
    with httpx.Client(timeout=30) as client:
        for case in cases:
            got = answer(client.post(f"{lane}/v1/predict", **case))
            want = answer(client.post(f"{route}/v1/predict", **case))
            assert got == want, case
            assert got[0] < 500, case
        # what the lane does not take goes to FastAPI on both servers
        for method in ("GET", "PUT"):
            assert answer(client.request(method, f"{lane}/v1/predict")) == answer(
                client.request(method, f"{route}/v1/predict")
            )
    for url in (lane, route):  # the lane's requests are labelled by the route's template
        m = scrape(url)
        assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=200}"] == 4
        assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=400}"] == 7


def test_same_answers_with_api_keys(pair) -> None:
    lane, route = pair(api_keys=[KEY, "other"])
    png = encode(xray_array(seed=6))
    variants = [
        {},
        {"x-api-key": KEY},
        {"x-api-key": "wrong"},
        {"authorization": f"Bearer {KEY}"},
        {"authorization": f"bearer   {KEY}"},
        {"authorization": f"Basic {KEY}"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer wrong", "x-api-key": KEY},
    ]
    statuses = []
    with httpx.Client(timeout=30) as client:
        for headers in variants:
            got = answer(client.post(f"{lane}/v1/predict", content=png, headers=headers))
            want = answer(client.post(f"{route}/v1/predict", content=png, headers=headers))
            assert got == want, headers
            statuses.append(got[0])
    assert statuses == [401, 200, 401, 200, 200, 401, 401, 200]


def test_same_429_when_the_queue_is_full(pair) -> None:
    lane, route = pair(max_queue=1, preprocess_threads=1)
    slow, png = slow_png(), encode(xray_array(seed=8))

    async def refused(url: str) -> httpx.Response:
        first = await RawUpload(url, slow).sent()
        await asyncio.sleep(0.1)  # its body is in: it holds the queue's one place (≥ 0.3 s)
        async with httpx.AsyncClient(timeout=60) as client:
            second = await client.post(f"{url}/v1/predict", content=png)
        assert await first.status() == 200
        return second

    got, want = answer(asyncio.run(refused(lane))), answer(asyncio.run(refused(route)))
    assert got == want
    assert got[0] == 429 and int(got[1]["retry-after"]) >= 1


@pytest.mark.parametrize("fast_lane", [True, False])
def test_same_503_before_the_model_is_loaded(settings_for, fast_lane: bool) -> None:
    # no lifespan: the engine was never started
    client = TestClient(create_app(settings_for(fast_lane=fast_lane)))
    r = client.post("/v1/predict", content=encode(xray_array()))
    assert r.status_code == 503
    assert r.json() == {"detail": "not ready: model is loading or warming up", "code": "not_ready"}
