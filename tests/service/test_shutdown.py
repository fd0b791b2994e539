"""SIGTERM on a real `python -m service` process: readiness 503 at once, nothing lost, exit 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from .conftest import encode, xray_array
from .test_startup import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("service did not become ready")


def test_sigterm_drains_queued_and_in_flight_requests(model_dir) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "MODEL_DIR": str(model_dir),
           # requests sit queued in the batcher when SIGTERM lands
           "MAX_BATCH_SIZE": "64", "MAX_WAIT_MS": "1000", "FLUSH_WHEN_IDLE": "false",
           "SHUTDOWN_GRACE_S": "0.5", "DRAIN_TIMEOUT_S": "10", "PREPROCESS_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(url, proc)
        payloads = [encode(xray_array(seed=i)) for i in range(12)]

        async def scenario():
            async with httpx.AsyncClient(timeout=30) as client:
                sent = [asyncio.create_task(client.post(f"{url}/v1/predict", content=p))
                        for p in payloads]
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
        assert "draining" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
