"""Faults under load: SIGTERM while clients are busy (nothing lost, exit 0), ORT failing for some
batches (only those fail, serving continues), and the API restarting under the web app (users get
a clear retry message, then service resumes)."""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import time

import httpx

from gateway_flask import create_app as create_web_app
from gateway_flask.settings import Settings as WebSettings
from tests.support.http import post_files
from tests.support.images import encode, xray
from tests.support.loadgen import SECRET_NAME, run_load
from tests.support.procs import debug_service

GRACE_S = 2.0


def test_sigterm_under_load_answers_everything_accepted_and_exits_0(start_service) -> None:
    # a max wait keeps requests queued in the batcher at the moment the signal lands
    svc = start_service(
        MAX_BATCH_SIZE="8",
        MAX_WAIT_MS="100",
        FLUSH_WHEN_IDLE="false",
        MAX_QUEUE="64",
        SHUTDOWN_GRACE_S=str(GRACE_S),
        DRAIN_TIMEOUT_S="20",
    )
    payloads = [encode(xray(512, 512, seed=i), "PNG") for i in range(8)]
    probes: list[tuple[float, int]] = []

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load(svc.url, payloads, workers=16, duration_s=30, stop=stop)
        )
        await asyncio.sleep(2.0)  # steady state: requests in flight and queued
        signalled = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        # what a load balancer does: probe readiness and stop routing once it fails
        async with httpx.AsyncClient(timeout=5) as prober:
            while not stop.is_set():
                r = await prober.get(f"{svc.url}/readyz", headers={"Connection": "close"})
                probes.append((time.monotonic() - signalled, r.status_code))
                if r.status_code == 503:
                    assert "draining" in r.json()["detail"]
                    stop.set()
                await asyncio.sleep(0.02)
        return await load

    tally = asyncio.run(scenario())
    code = svc.terminate()
    first_503 = next(t for t, status in probes if status == 503)
    print(
        f"\nSIGTERM under load (16 clients busy at the signal): {tally.summary()}; readiness 503 "
        f"{first_503 * 1000:.0f} ms after "
        f"the signal (grace {GRACE_S:g} s); exit code {code}"
    )
    assert [s for _, s in probes] == [503]  # the very first probe after the signal
    assert tally.lost == 0 and tally.refused_connections == 0, tally.summary()
    assert tally.statuses() == {200: tally.sent}, tally.summary()
    assert code == 0
    assert "draining" in svc.log_text()


def test_many_stalled_uploads_hold_no_queue_slots_and_block_nobody(start_service) -> None:
    svc = start_service(MAX_QUEUE="4")
    image = encode(xray(seed=3), "PNG")
    host, port = svc.url.removeprefix("http://").split(":")
    stalled = []
    try:
        for _ in range(32):  # 8× MAX_QUEUE clients announce 1 MB, send 1 KB, then stall
            conn = socket.create_connection((host, int(port)))
            conn.sendall(
                b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000000\r\n\r\n" + image[:1024]
            )
            stalled.append(conn)
        with httpx.Client(base_url=svc.url, timeout=10) as client:
            statuses = [client.post("/v1/predict", content=image).status_code for _ in range(8)]
            assert statuses == [200] * 8  # a queue of 4 is not taken by 32 half-sent uploads
            assert client.get("/readyz").status_code == 200
    finally:
        for conn in stalled:
            conn.close()
    assert httpx.post(f"{svc.url}/v1/predict", content=image).status_code == 200


def test_a_stalled_upload_gets_408_and_its_connection_closed(start_service) -> None:
    svc = start_service(UPLOAD_IDLE_TIMEOUT_S="1")
    image = encode(xray(seed=4), "PNG")
    host, port = svc.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: %d\r\n\r\n" % len(image) + image[:1000]
        )
        answer = b""
        while chunk := conn.recv(65536):  # read until the server closes the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"connection: close" in head.lower()
    assert b"UPLOAD_IDLE_TIMEOUT_S" in body and b"upload_timeout" in body

    def steady():  # slow but never silent for a whole second: it must get through
        for i in range(0, len(image), len(image) // 6 + 1):
            time.sleep(0.3)
            yield image[i : i + len(image) // 6 + 1]

    r = httpx.post(f"{svc.url}/v1/predict", content=steady(), timeout=30)
    assert r.status_code == 200, r.text


def test_ort_failing_for_some_batches_fails_only_those(start_service, faulty_model_dir) -> None:
    # the faulty model raises inside ORT for any batch holding a very bright image
    svc = start_service(
        MODEL_DIR=str(faulty_model_dir),
        MAX_BATCH_SIZE="4",
        MAX_WAIT_MS="20",
        FLUSH_WHEN_IDLE="false",
    )
    bright, dark = 1.6, 0.5  # brightness: max pixel > 250 breaks the batch, < 250 does not

    def image(i: int) -> tuple[bool, bytes]:
        poisoned = i % 8 == 0
        arr = (xray(256, 256, seed=i).astype(float) * (bright if poisoned else dark)).clip(0, 255)
        return poisoned, encode(arr.astype("uint8"), "PNG")

    cases = [image(i) for i in range(64)]

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{svc.url}/v1/predict", files={"file": (f"{SECRET_NAME}.png", data)}
                    )
                    for _, data in cases
                )
            )

    responses = asyncio.run(send_all())
    poisoned = [r for (bad, _), r in zip(cases, responses) if bad]
    healthy = [r for (bad, _), r in zip(cases, responses) if not bad]
    failed_healthy = sum(r.status_code == 500 for r in healthy)
    print(
        f"\nORT fault injection: {len(cases)} requests, {len(poisoned)} poisoned → "
        f"{sum(r.status_code == 500 for r in poisoned)} × 500; healthy: "
        f"{sum(r.status_code == 200 for r in healthy)} × 200, {failed_healthy} × 500 (shared a "
        f"batch with a poisoned image)"
    )
    assert {r.status_code for r in responses} <= {200, 500}
    for r in responses:
        if r.status_code == 500:
            body = r.json()
            assert (
                body["code"] == "inference_failed"
                and "inference failed for a batch of" in body["detail"]
            )
    assert all(r.status_code == 500 for r in poisoned)
    # a failure takes down its own batch only: at most max_batch_size − 1 bystanders per poison
    assert failed_healthy <= len(poisoned) * 3
    assert sum(r.status_code == 200 for r in healthy) > 0
    assert httpx.get(f"{svc.url}/readyz").status_code == 200
    assert httpx.post(f"{svc.url}/v1/predict", content=image(1)[1]).status_code == 200


def test_api_restart_under_the_web_app_gives_a_retry_message_then_recovers(
    start_service, tmp_path, model_dir
) -> None:
    svc = start_service()
    web = create_web_app(WebSettings(api_url=svc.url, secret_key="k" * 32))
    client = web.test_client()
    image = encode(xray(seed=5), "PNG")

    def api_predict():
        return client.post(
            "/api/predict",
            data={"file": (io.BytesIO(image), f"{SECRET_NAME}.png")},
            content_type="multipart/form-data",
        )

    try:
        assert api_predict().status_code == 200
        assert svc.terminate() == 0  # the API goes away under the running web app

        down = api_predict()
        assert down.status_code == 503 and down.json["code"] == "api_unavailable"
        assert int(down.headers["Retry-After"]) >= 1
        page = post_files(client, [(image, f"{SECRET_NAME}.png")])
        assert page.status_code == 503 and "Retry-After" in page.headers
        assert "cannot reach the inference service" in page.get_data(as_text=True)
        assert client.get("/api/health").json == {"api": "down"}

        restarted = debug_service(
            tmp_path / "restarted.log", port=svc.port, MODEL_DIR=str(model_dir)
        ).start()
        try:
            assert client.get("/api/health").json == {"api": "ready"}
            assert api_predict().status_code == 200
            assert post_files(client, [(image, f"{SECRET_NAME}.png")]).status_code == 200
        finally:
            assert restarted.terminate() == 0
            assert SECRET_NAME not in restarted.log_text()
    finally:
        web.extensions["api_client"].close()
