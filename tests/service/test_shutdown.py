"""SIGTERM on a real `python -m service` process: readiness 503 at once, nothing lost, exit 0."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.support.images import encode, xray_array
from tests.support.procs import ServerProcess


def test_sigterm_drains_queued_and_in_flight_requests(model_dir, tmp_path) -> None:
    svc = ServerProcess(
        "service",
        log=tmp_path / "service.log",
        env={
            "MODEL_DIR": str(model_dir),
            # requests sit queued in the batcher when SIGTERM lands
            "MAX_BATCH_SIZE": "64",
            "MAX_WAIT_MS": "1000",
            "FLUSH_WHEN_IDLE": "false",
            "SHUTDOWN_GRACE_S": "0.5",
            "DRAIN_TIMEOUT_S": "10",
            "PREPROCESS_THREADS": "2",
        },
    )
    url = svc.url
    with svc.start(timeout_s=30):
        proc = svc.proc
        payloads = [encode(xray_array(seed=i)) for i in range(12)]

        async def scenario():
            async with httpx.AsyncClient(timeout=30) as client:
                sent = [
                    asyncio.create_task(client.post(f"{url}/v1/predict", content=p))
                    for p in payloads
                ]
                await asyncio.sleep(0.3)  # all accepted and waiting in the batcher
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                async with httpx.AsyncClient(timeout=5) as fresh:  # new connection, in grace
                    ready = await fresh.get(f"{url}/readyz")
                    late = await fresh.post(f"{url}/v1/predict", content=payloads[0])
                return ready, late, await asyncio.gather(*sent, return_exceptions=True)

        ready, late, responses = asyncio.run(scenario())
        assert ready.status_code == 503 and "draining" in ready.json()["detail"]
        assert late.status_code == 200  # accepted during the grace period, so answered
        lost = [r for r in responses if not isinstance(r, httpx.Response) or r.status_code != 200]
        assert lost == [], lost
        assert len(responses) == 12
        assert proc.wait(timeout=30) == 0
        assert "draining" in svc.log_text()
