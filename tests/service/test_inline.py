"""Uploads run ORT in their decoding thread (INLINE_INFERENCE, the default on a CPU): every image
is its own batch of one, failures and deadlines stay per request, and a client that leaves while
its image waits for a decoding thread costs nothing. Real server, real ORT."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.http import RawUpload, scrape
from tests.support.images import encode, slow_png, xray_array


async def post_all(url: str, payloads: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/v1/predict", files={"file": ("x.png", p)}) for p in payloads)
        )


def test_uploads_are_computed_one_by_one_in_their_thread(serve, settings_for) -> None:
    # a long max wait would hold any image that went through the batcher: inline ignores it
    srv = serve(settings_for(max_batch_size=8, max_wait_ms=3000, flush_when_idle=False))
    payloads = [encode(xray_array(seed=i)) for i in range(6)]
    responses = asyncio.run(post_all(srv.url, payloads))
    assert [r.status_code for r in responses] == [200] * 6
    for r in responses:
        timings = r.json()["timings_ms"]
        assert set(timings) == {"preprocess", "queue", "inference", "total"}
        assert timings["total"] < 3000  # nobody waited MAX_WAIT_MS for company
        assert timings["total"] >= timings["preprocess"] + timings["inference"]
    m = scrape(srv.url)
    assert m["cxr_batch_size_count"] == 6 and m["cxr_batch_size_sum"] == 6
    assert m["cxr_queue_wait_seconds_count"] == 6
    assert m["cxr_inference_batch_duration_seconds_count"] == 6
    assert m["cxr_images_total{format=png}"] == 6


def test_inline_and_batched_answers_agree(serve, settings_for) -> None:
    png = encode(xray_array(seed=7))
    inline = serve(settings_for(inline_inference="on"))
    batched = serve(settings_for(inline_inference="off"))
    a = httpx.post(f"{inline.url}/v1/predict", content=png, timeout=30).json()
    b = httpx.post(f"{batched.url}/v1/predict", content=png, timeout=30).json()
    a.pop("timings_ms"), b.pop("timings_ms")
    assert a == b


def test_ort_failure_fails_only_that_request(serve, settings_for, faulty_model_dir) -> None:
    srv = serve(settings_for(model_dir=faulty_model_dir, inline_inference="on"))
    bright = encode(xray_array(seed=1, brightness=1.6))  # max pixel > 250: the model's Gather fails
    dark = encode(xray_array(seed=2, brightness=0.5))
    responses = asyncio.run(post_all(srv.url, [bright, dark, dark]))
    assert [r.status_code for r in responses] == [500, 200, 200]  # no bystanders
    failed = responses[0].json()
    assert failed["code"] == "inference_failed"
    assert "inference failed for a batch of 1" in failed["detail"]
    assert "Gather" in failed["detail"] or "indices" in failed["detail"]
    assert scrape(srv.url)["cxr_batch_size_count"] == 2  # the failed run is not a batch done


def test_deadline_passed_while_decoding_gives_504_without_running_ort(serve, settings_for) -> None:
    srv = serve(settings_for(request_timeout_ms=1, inline_inference="on"))
    r = httpx.post(f"{srv.url}/v1/predict", content=encode(xray_array(2048, 2048)), timeout=30)
    assert r.status_code == 504 and r.json()["code"] == "deadline_exceeded"
    assert "before reaching the model" in r.json()["detail"]
    m = scrape(srv.url)
    assert m["cxr_rejections_total{reason=deadline}"] == 1
    assert m.get("cxr_batch_size_count", 0) == 0


STAYERS = 5


def test_client_gone_while_waiting_for_a_thread_is_not_computed(serve, settings_for) -> None:
    srv = serve(settings_for(preprocess_threads=1, inline_inference="on"))
    big, small = slow_png(), encode(xray_array(seed=3))

    async def scenario() -> list[int]:
        # five slow images ahead of it keep the one decoding thread busy for ≥ 0.35 s: the
        # leaver cannot reach it before it hangs up (one alone decodes in 70 ms on some CPUs)
        stayers = []
        for _ in range(STAYERS):
            stayers.append(await RawUpload(srv.url, big).sent())
            await asyncio.sleep(0.02)  # its body is in (read before the leaver's small one)
        leaver = await RawUpload(srv.url, small).sent()
        await asyncio.sleep(0.05)  # its body is in too: it waits for the thread
        leaver.close()  # the server sees the disconnect
        return [await s.status() for s in stayers]

    assert asyncio.run(scenario()) == [200] * STAYERS
    m = scrape(srv.url)
    assert m["cxr_rejections_total{reason=client_gone}"] == 1
    assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=499}"] == 1
    assert m["cxr_batch_size_count"] == STAYERS  # only the stayers' images went through ORT
    assert m["cxr_images_total{format=png}"] == STAYERS  # the leaver's was never even decoded
