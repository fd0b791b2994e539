"""Batching, overload, deadlines and ORT failures through a real server and real ORT.

Uploads run ORT in their decoding thread by default on a CPU (INLINE_INFERENCE=auto); the tests
of the batcher send them through it with inline_inference="off". The inline path: test_inline.py.
"""

from __future__ import annotations

import asyncio

import httpx

from tests.support.http import scrape
from tests.support.images import encode, xray_array


async def post_many(url: str, payloads: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/v1/predict", files={"file": ("x.png", p)}) for p in payloads)
        )


def test_concurrent_requests_are_batched(serve, settings_for) -> None:
    srv = serve(
        settings_for(
            max_batch_size=8, max_wait_ms=50, flush_when_idle=False, inline_inference="off"
        )
    )
    payloads = [encode(xray_array(seed=i)) for i in range(16)]
    responses = asyncio.run(post_many(srv.url, payloads))
    assert all(r.status_code == 200 for r in responses)
    m = scrape(srv.url)
    # the two warm-up runs bypass the batcher, so the histogram holds exactly these 16 rows
    assert m["cxr_batch_size_sum"] == 16
    assert m["cxr_batch_size_count"] < 16  # fewer batches than requests: they were batched
    assert m["cxr_batch_size_bucket{le=1.0}"] < m["cxr_batch_size_count"]


def test_queue_full_gives_429_with_retry_after(serve, settings_for) -> None:
    # a long max_wait keeps the first request queued; the queue holds one image
    srv = serve(
        settings_for(
            max_batch_size=64,
            max_wait_ms=1500,
            max_queue=1,
            flush_when_idle=False,
            inline_inference="off",
        )
    )

    async def main():
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.create_task(
                client.post(f"{srv.url}/v1/predict", content=encode(xray_array(seed=1)))
            )
            await asyncio.sleep(0.5)
            second = await client.post(f"{srv.url}/v1/predict", content=encode(xray_array(seed=2)))
            return await first, second

    first, second = asyncio.run(main())
    assert first.status_code == 200
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.json()["code"] == "overloaded" and "queue is full" in second.json()["detail"]
    assert scrape(srv.url)["cxr_rejections_total{reason=queue_full}"] == 1


def test_deadline_gives_504(serve, settings_for) -> None:
    srv = serve(
        settings_for(
            max_batch_size=64,
            max_wait_ms=3000,
            request_timeout_ms=200,
            flush_when_idle=False,
            inline_inference="off",
        )
    )
    r = httpx.post(f"{srv.url}/v1/predict", content=encode(xray_array()), timeout=30)
    assert r.status_code == 504 and r.json()["code"] == "deadline_exceeded"
    assert "REQUEST_TIMEOUT_MS" in r.json()["detail"]
    assert scrape(srv.url)["cxr_rejections_total{reason=deadline}"] == 1


def test_ort_failure_fails_the_batch_with_cause_then_serves(
    serve, settings_for, faulty_model_dir
) -> None:
    srv = serve(
        settings_for(
            model_dir=faulty_model_dir,
            max_batch_size=8,
            max_wait_ms=200,
            flush_when_idle=False,
            inline_inference="off",
        )
    )
    bright = encode(xray_array(seed=1, brightness=1.6))  # max pixel > 250: the model's Gather fails
    dark = encode(xray_array(seed=2, brightness=0.5))
    responses = asyncio.run(post_many(srv.url, [bright, dark]))
    assert [r.status_code for r in responses] == [500, 500]  # one batch, so both fail
    for r in responses:
        assert r.json()["code"] == "inference_failed"
        assert "inference failed for a batch of 2" in r.json()["detail"]
        assert "Gather" in r.json()["detail"] or "indices" in r.json()["detail"]
    after = httpx.post(f"{srv.url}/v1/predict", content=dark)
    assert after.status_code == 200  # the server keeps serving


def test_slow_upload_does_not_block_others(server) -> None:
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as slow:
        slow.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 200000\r\n\r\n" + encode(xray_array())[:1000]
        )
        # the slow body is still arriving; everybody else is served meanwhile
        r = httpx.post(f"{server.url}/v1/predict", content=encode(xray_array(seed=3)), timeout=10)
        assert r.status_code == 200
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_deadline_counts_from_arrival_not_from_queueing(serve, settings_for) -> None:
    # decoding a 2048² PNG takes far longer than 1 ms: the budget is gone before the batcher
    srv = serve(settings_for(request_timeout_ms=1))
    r = httpx.post(f"{srv.url}/v1/predict", content=encode(xray_array(2048, 2048)), timeout=30)
    assert r.status_code == 504 and "before reaching the model" in r.json()["detail"]
