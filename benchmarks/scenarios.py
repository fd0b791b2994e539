"""Load levels against one running server, with the server-side numbers read around each level."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from benchmarks.load import LoadResult, closed_loop, open_loop
from benchmarks.payloads import Body
from benchmarks.procs import ServerProcess


def _batch_totals(server: ServerProcess) -> tuple[float, float, float, float]:
    samples = server.scrape()
    return (
        samples.get("cxr_batch_size_sum", 0.0),
        samples.get("cxr_batch_size_count", 0.0),
        samples.get("cxr_queue_wait_seconds_sum", 0.0),
        samples.get("cxr_queue_wait_seconds_count", 0.0),
    )


def run_level(
    server: ServerProcess,
    path: str,
    bodies: list[Body],
    *,
    scenario: str,
    image: str,
    concurrency: int | None = None,
    rate: float | None = None,
    seconds: float,
    metrics: bool = True,
) -> dict[str, Any]:
    """One closed-loop (concurrency) or open-loop (rate) level; returns a flat result row."""
    before = _batch_totals(server) if metrics else None
    cpu = [server.cpu_s()]
    url = server.url + path
    if concurrency is not None:
        # the server's CPU is read when the measured window opens and closes (not the warm-up)
        result: LoadResult = asyncio.run(
            closed_loop(
                url,
                bodies,
                concurrency,
                seconds=seconds,
                max_requests=10**9,
                on_window=lambda: cpu.append(server.cpu_s()),
            )
        )
    else:
        assert rate is not None
        result = asyncio.run(open_loop(url, bodies, rate, seconds=seconds))
        cpu.append(server.cpu_s())  # open loop: no warm-up, the whole level is measured
    server_cpu = cpu[-1] - cpu[-2]
    row = {"scenario": scenario, "image": image, **asdict(result)}
    row.pop("extra")
    row["rss_mb"] = round(server.rss_mb(), 1)
    row["server_cpu_ms"] = server_cpu * 1000 / max(result.ok, 1)
    if before is not None:
        after = _batch_totals(server)
        count = after[1] - before[1]
        row["mean_batch"] = (after[0] - before[0]) / count if count else None
        waits = after[3] - before[3]
        row["mean_queue_wait_ms"] = (after[2] - before[2]) * 1000 / waits if waits else None
    return row


def soak(
    server: ServerProcess,
    path: str,
    bodies: list[Body],
    requests: int,
    warmup: int,
    concurrency: int = 16,
) -> dict[str, float]:
    """RSS after `warmup` requests and again after `requests` more (leak check)."""
    url = server.url + path
    asyncio.run(
        closed_loop(url, bodies, concurrency, seconds=3600, max_requests=warmup, warmup_s=0)
    )
    rss0 = server.worker_rss_mb()
    result = asyncio.run(
        closed_loop(url, bodies, concurrency, seconds=3600, max_requests=requests, warmup_s=0)
    )
    rss1 = server.worker_rss_mb()
    growth = {pid: (rss1[pid] - mb) / mb * 100 for pid, mb in rss0.items() if pid in rss1}
    before, after = sum(rss0.values()), sum(rss1.values())
    return {
        "requests": result.ok + sum(result.errors.values()),
        "ok": result.ok,
        "errors": sum(result.errors.values()),
        "warmup_requests": warmup,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "growth_pct": round((after - before) / before * 100, 2),
        "processes": len(rss0),
        "max_process_growth_pct": round(max(growth.values()), 2) if growth else None,
    }
