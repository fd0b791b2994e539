"""Overload on loopback: the excess gets 429 + Retry-After, every accepted request is answered,
memory stays bounded, and the service is healthy afterwards (bounded in count and time)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import encode, xray_array
from .test_shutdown import REPO, free_port, wait_ready


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_overload_sheds_with_429_and_loses_nothing(model_dir) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "MODEL_DIR": str(model_dir),
           "MAX_BATCH_SIZE": "4", "MAX_QUEUE": "8", "PREPROCESS_THREADS": "2",
           "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    payloads = [encode(xray_array(512, 512, seed=i)) for i in range(8)]

    async def flood(n: int, concurrency: int) -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/predict",
                                                      content=payloads[i % len(payloads)])
                                          for i in range(n)), return_exceptions=True)
    try:
        wait_ready(url, proc)
        asyncio.run(flood(40, 8))  # warm the allocator before measuring memory
        before = rss_mb(proc.pid)
        responses = asyncio.run(flood(400, 64))
        after = rss_mb(proc.pid)
        statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in responses]
        counts = {s: statuses.count(s) for s in set(statuses)}
        print(f"\noverload: sent 400, answered {counts}, RSS {before:.0f} → {after:.0f} MB")
        assert set(counts) <= {200, 429}, counts  # no 5xx, no dropped connection
        assert counts.get(200, 0) > 0 and counts.get(429, 0) > 0, counts
        for r in responses:
            if isinstance(r, httpx.Response) and r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
        assert after - before < 100, (before, after)
        assert httpx.get(f"{url}/readyz").status_code == 200
        assert httpx.post(f"{url}/v1/predict", content=payloads[0]).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
