"""Overload on loopback: the excess gets 429 + Retry-After, every accepted request is answered,
memory stays bounded, and the service is healthy afterwards (bounded in count and time)."""

from __future__ import annotations

import asyncio
import signal

import httpx

from tests.support.images import encode, xray_array
from tests.support.procs import ServerProcess


def test_overload_sheds_with_429_and_loses_nothing(model_dir, tmp_path) -> None:
    svc = ServerProcess(
        "service",
        log=tmp_path / "service.log",
        env={
            "MODEL_DIR": str(model_dir),
            "MAX_BATCH_SIZE": "4",
            "MAX_QUEUE": "8",
            "PREPROCESS_THREADS": "2",
            "LOG_LEVEL": "WARNING",
        },
    )
    url = svc.url
    payloads = [encode(xray_array(512, 512, seed=i)) for i in range(8)]

    async def flood(n: int, concurrency: int) -> list[httpx.Response | BaseException]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{url}/v1/predict", content=payloads[i % len(payloads)])
                    for i in range(n)
                ),
                return_exceptions=True,
            )

    with svc.start(timeout_s=30):
        asyncio.run(flood(40, 8))  # warm the allocator before measuring memory
        before = svc.rss_mb()
        responses = asyncio.run(flood(400, 64))
        after = svc.rss_mb()
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
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(timeout=30) == 0
