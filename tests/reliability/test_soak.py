"""Soak under overload on loopback (about half a minute): several times the load the service can
sustain → the excess is refused at once with 429 + Retry-After, every accepted request is
answered within its deadline, memory stays flat, and the service is healthy afterwards."""

from __future__ import annotations

import asyncio

import httpx
from PIL import Image

from tests.support.http import scrape
from tests.support.images import encode, xray
from tests.support.loadgen import run_load

REQUEST_TIMEOUT_MS = 5000
MAX_QUEUE = 8
SOAK_S = 25.0
RSS_DRIFT_LIMIT_MB = 40


def cheap_to_send_costly_to_decode(seed: int) -> bytes:
    """A 2048² PNG of ~30 KB (nearest-neighbour upscaled): tens of ms to decode, ~nothing to send,
    so one Python client process can offer several times what the service sustains."""
    small = Image.fromarray(xray(128, 128, seed=seed))
    return encode(small.resize((2048, 2048), Image.Resampling.NEAREST), "PNG")


def rejections(url: str) -> float:
    return scrape(url).get("cxr_rejections_total{reason=queue_full}", 0.0)


def test_overload_soak_sheds_excess_answers_the_rest_memory_flat(start_service) -> None:
    svc = start_service(
        MAX_BATCH_SIZE="4",
        MAX_QUEUE=str(MAX_QUEUE),
        REQUEST_TIMEOUT_MS=str(REQUEST_TIMEOUT_MS),
        LOG_LEVEL="INFO",
    )
    payloads = [cheap_to_send_costly_to_decode(seed=i) for i in range(8)]

    # What the service sustains: a closed loop of 2 clients never has to be refused.
    baseline = asyncio.run(run_load(svc.url, payloads, workers=2, duration_s=4))
    assert baseline.statuses() == {200: baseline.sent}, baseline.summary()
    sustainable = baseline.sent / 4

    rss: list[float] = []
    overload = asyncio.run(
        run_load(
            svc.url,
            payloads,
            workers=12 * 2,
            duration_s=SOAK_S,
            on_tick=lambda: rss.append(svc.rss_mb()),
        )
    )
    rss.append(svc.rss_mb())
    offered = overload.sent / SOAK_S
    print(
        f"\nsoak: sustainable ≈ {sustainable:.0f} req/s (2 clients); overload 24 clients for "
        f"{SOAK_S:g} s offered {offered:.0f} req/s = {offered / sustainable:.1f}× — "
        f"{overload.summary()}; RSS {rss[0]:.0f} → {rss[-1]:.0f} MB (max {max(rss):.0f})"
    )

    assert overload.lost == 0 and overload.refused_connections == 0, overload.summary()
    statuses = overload.statuses()
    assert set(statuses) == {200, 429}, statuses  # no 5xx, no 504: the excess is refused up front
    for o in overload.outcomes:
        if o.status == 429:
            assert int(o.retry_after or 0) >= 1 and o.body["code"] == "overloaded"
        else:  # answered, and compute started within the request's deadline
            t = o.body["timings_ms"]
            assert t["preprocess"] + t["queue"] <= REQUEST_TIMEOUT_MS, t
    # the server counted exactly the refusals the clients saw
    assert rejections(svc.url) == statuses[429]
    # memory: flat once warm (first sample is after a second of overload)
    assert rss[-1] - rss[0] < RSS_DRIFT_LIMIT_MB, rss

    assert httpx.get(f"{svc.url}/readyz").status_code == 200
    assert httpx.post(f"{svc.url}/v1/predict", content=payloads[0]).status_code == 200
    assert svc.terminate() == 0


def test_excess_is_refused_before_its_upload_is_read(start_service) -> None:
    # one image held in the batcher (long max wait) fills a queue of one; MAX_QUEUE is per
    # worker process, so one worker (with two, the next connection may reach the idle one)
    svc = start_service(
        MAX_BATCH_SIZE="64",
        MAX_WAIT_MS="3000",
        FLUSH_WHEN_IDLE="false",
        MAX_QUEUE="1",
        WORKERS="1",
        INLINE_INFERENCE="off",
    )
    host, port = svc.url.removeprefix("http://").split(":")

    async def main() -> tuple[httpx.Response, bytes, httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            held = asyncio.create_task(
                client.post(f"{svc.url}/v1/predict", content=encode(xray(seed=1), "PNG"))
            )
            await asyncio.sleep(0.5)
            # headers announcing 10 MB, and not one byte of body: the answer must not need it
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 10000000\r\n\r\n"
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            writer.close()
            preview = await client.post(f"{svc.url}/v1/preview", content=encode(xray(), "PNG"))
            return await held, head, preview

    held, head, preview = asyncio.run(main())
    assert head.startswith(b"HTTP/1.1 429") and b"retry-after:" in head.lower(), head
    assert preview.status_code == 429  # thumbnails share the decoding threads and the queue
    assert held.status_code == 200
    assert httpx.post(f"{svc.url}/v1/predict", content=encode(xray(), "PNG")).status_code == 200
