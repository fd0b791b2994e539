"""Async httpx load generator: closed loop (fixed concurrency) and open loop (fixed arrival rate)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from benchmarks.payloads import Body


@dataclass
class LoadResult:
    """One load level: counts, throughput and latency percentiles (ms) of the measured window."""

    mode: str  # closed | open
    level: float  # concurrency (closed) or offered requests/s (open)
    ok: int
    errors: dict[str, int]
    seconds: float
    throughput: float  # successful requests per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu_ms: float  # load generator CPU per request (it shares the cores with the server)
    extra: dict[str, float] = field(default_factory=dict)  # filled by the caller (batch size, RSS…)


def summarise(mode: str, level: float, latencies: list[float], statuses: Counter[str],
              seconds: float, client_cpu_s: float) -> LoadResult:
    """Percentiles over successful requests; every non-200 outcome is counted by its status."""
    ok = statuses.get("200", 0)
    lat = np.asarray(latencies, dtype=np.float64) * 1000 if latencies else np.full(1, np.nan)
    p50, p95, p99 = (float(v) for v in np.percentile(lat, [50, 95, 99]))
    total = sum(statuses.values())
    return LoadResult(mode, level, ok, {k: v for k, v in statuses.items() if k != "200"},
                      round(seconds, 3), ok / seconds if seconds > 0 else 0.0, p50, p95, p99,
                      float(np.mean(lat)), client_cpu_s * 1000 / max(total, 1))


async def _send(client: httpx.AsyncClient, url: str, body: Body) -> str:
    try:
        r = await client.post(url, content=body.content,
                              headers={"content-type": body.content_type, **dict(body.headers)})
        await r.aread()
        return str(r.status_code)
    except httpx.TimeoutException:
        return "timeout"
    except httpx.TransportError as exc:
        return type(exc).__name__


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _client() -> httpx.AsyncClient:
    """One keep-alive connection per client: httpcore's pool scans every connection on each
    request, so one shared pool of 64 connections costs the load generator ~5× more CPU. The
    SSL context is shared: building one per client costs ~25 ms of CPU (loopback is plain HTTP)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0), verify=_ssl_context())


async def closed_loop(url: str, bodies: list[Body], concurrency: int, *, seconds: float,
                      max_requests: int, warmup_s: float = 0.5) -> LoadResult:
    """`concurrency` clients each send the next request as soon as the previous one is answered."""
    cycle = itertools.cycle(bodies)
    clients = [_client() for _ in range(concurrency)]

    async def worker(client: httpx.AsyncClient, stop_at: float, budget: list[int],
                     lat: list[float] | None, statuses: Counter[str] | None) -> None:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            status = await _send(client, url, next(cycle))
            if statuses is not None and lat is not None:
                statuses[status] += 1
                if status == "200":
                    lat.append(time.perf_counter() - t0)

    try:
        warm_end = time.perf_counter() + warmup_s  # connections open, batcher settles
        await asyncio.gather(*(worker(c, warm_end, [10**9], None, None) for c in clients))
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        budget = [max_requests]
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(c, t0 + seconds, budget, latencies, statuses)
                               for c in clients))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return summarise("closed", concurrency, latencies, statuses, elapsed, cpu)


async def open_loop(url: str, bodies: list[Body], rate: float, *, seconds: float,
                    max_in_flight: int = 256, seed: int = 0) -> LoadResult:
    """Poisson arrivals at `rate`/s whatever the server does; latency counts from the scheduled
    arrival (no coordinated omission), and arrivals past `max_in_flight` count as 'dropped'."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 1.5) + 10)
    cycle = itertools.cycle(bodies)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    in_flight = 0

    idle: list[httpx.AsyncClient] = []
    opened: list[httpx.AsyncClient] = []

    async def one(scheduled: float, body: Body) -> None:
        nonlocal in_flight
        if idle:
            client = idle.pop()
        else:
            client = _client()
            opened.append(client)
        status = await _send(client, url, body)
        idle.append(client)
        in_flight -= 1
        statuses[status] += 1
        if status == "200":
            latencies.append(time.perf_counter() - scheduled)

    tasks = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    scheduled = t0
    try:
        for gap in gaps:
            scheduled += gap
            if scheduled > t0 + seconds:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                statuses["dropped"] += 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(scheduled, next(cycle))))
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await asyncio.gather(*(c.aclose() for c in opened))
    return summarise("open", rate, latencies, statuses, elapsed, cpu)
