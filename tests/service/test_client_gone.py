"""A client that disconnects while its image waits in the batch queue: the image leaves the queue
uncomputed (counted as client_gone), and the next caller does not wait behind it."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.http import scrape
from tests.support.images import encode, xray_array


def test_queued_request_of_a_disconnected_client_is_not_computed(serve, settings_for) -> None:
    # a long max wait and no idle flush: the first image sits in the queue until it is cancelled
    server = serve(
        settings_for(
            max_batch_size=64, max_wait_ms=1500, flush_when_idle=False, inline_inference="off"
        )
    )
    png = encode(xray_array(seed=4))

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as leaver:
            leaving = asyncio.create_task(leaver.post(f"{server.url}/v1/predict", content=png))
            for _ in range(200):  # until it waits in the batcher
                await asyncio.sleep(0.01)
                if scrape(server.url).get("cxr_queue_depth") == 1:
                    break
            leaving.cancel()  # httpx closes the connection: the server sees the disconnect
        for _ in range(200):
            await asyncio.sleep(0.01)
            if scrape(server.url).get("cxr_queue_depth") == 0:
                break
        async with httpx.AsyncClient(timeout=30) as stayer:
            return await stayer.post(f"{server.url}/v1/predict", content=png)

    answered = asyncio.run(scenario())
    assert answered.status_code == 200
    m = scrape(server.url)
    assert m["cxr_rejections_total{reason=client_gone}"] == 1
    assert m["cxr_batch_size_count"] == 1 and m["cxr_batch_size_sum"] == 1  # only the stayer's
    assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=499}"] == 1
    assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=200}"] == 1
    assert m["cxr_queue_depth"] == 0 and m["cxr_requests_in_flight"] == 1  # this scrape
