"""Async load generator: closed loop (fixed concurrency) and open loop (fixed arrival rate), over
raw keep-alive HTTP/1.1 connections with requests built once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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


def summarise(
    mode: str,
    level: float,
    latencies: list[float],
    statuses: Counter[str],
    seconds: float,
    client_cpu_s: float,
) -> LoadResult:
    """Percentiles over successful requests; every non-200 outcome is counted by its status."""
    ok = statuses.get("200", 0)
    lat = np.asarray(latencies, dtype=np.float64) * 1000 if latencies else np.full(1, np.nan)
    p50, p95, p99 = (float(v) for v in np.percentile(lat, [50, 95, 99]))
    total = sum(statuses.values())
    return LoadResult(
        mode,
        level,
        ok,
        {k: v for k, v in statuses.items() if k != "200"},
        round(seconds, 3),
        ok / seconds if seconds > 0 else 0.0,
        p50,
        p95,
        p99,
        float(np.mean(lat)),
        client_cpu_s * 1000 / max(total, 1),
    )


def _requests(url: str, bodies: list[Body]) -> tuple[str, int, list[bytes]]:
    """(host, port, each body as a complete HTTP/1.1 request), built once before the load."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    out = []
    for body in bodies:
        head = [
            f"POST {parts.path or '/'} HTTP/1.1",
            f"Host: {host}:{port}",
            f"Content-Type: {body.content_type}",
            f"Content-Length: {len(body.content)}",
            *(f"{k}: {v}" for k, v in body.headers),
        ]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body.content)
    return host, port, out


class _Connection:
    """One keep-alive HTTP/1.1 connection sending prebuilt requests. The generator shares the
    cores with the server, so it must be cheap: httpx spent ~1.8 CPU ms per request (a quarter
    of a 1024-px image's whole in-process cost); this reads the status line, Content-Length and
    the body, nothing else (~0.1–0.2 ms)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes, timeout_s: float = 60.0) -> str:
        """Send one request; its status code as text, or what went wrong."""
        try:
            async with asyncio.timeout(timeout_s):
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                assert self.reader is not None
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                lower = head.lower()
                at = lower.find(b"\r\ncontent-length:")  # not inference-header-content-length
                length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)]) if at >= 0 else 0
                await self.reader.readexactly(length)
                if b"connection: close" in lower:
                    self.close()
                return head[9:12].decode()
        except TimeoutError:
            self.close()
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            return type(exc).__name__

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(
    url: str,
    bodies: list[Body],
    concurrency: int,
    *,
    seconds: float,
    max_requests: int,
    warmup_s: float = 0.5,
    on_window: Callable[[], None] | None = None,
) -> LoadResult:
    """`concurrency` clients each send the next request as soon as the previous one is answered.
    `on_window` is called when the measured window starts (after the warm-up) and when it ends,
    so the caller can read the server's CPU time over exactly the requests counted."""
    host, port, requests = _requests(url, bodies)
    cycle = itertools.cycle(requests)
    clients = [_Connection(host, port) for _ in range(concurrency)]

    async def worker(
        client: _Connection,
        stop_at: float,
        budget: list[int],
        lat: list[float] | None,
        statuses: Counter[str] | None,
    ) -> None:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            status = await client.send(next(cycle))
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
        if on_window is not None:
            on_window()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(
            *(worker(c, t0 + seconds, budget, latencies, statuses) for c in clients)
        )
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if on_window is not None:
            on_window()
    finally:
        for c in clients:
            c.close()
    return summarise("closed", concurrency, latencies, statuses, elapsed, cpu)


async def open_loop(
    url: str,
    bodies: list[Body],
    rate: float,
    *,
    seconds: float,
    max_in_flight: int = 256,
    seed: int = 0,
) -> LoadResult:
    """Poisson arrivals at `rate`/s whatever the server does; latency counts from the scheduled
    arrival (no coordinated omission), and arrivals past `max_in_flight` count as 'dropped'."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 1.5) + 10)
    host, port, requests = _requests(url, bodies)
    cycle = itertools.cycle(requests)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    in_flight = 0

    idle: list[_Connection] = []
    opened: list[_Connection] = []

    async def one(scheduled: float, request: bytes) -> None:
        nonlocal in_flight
        if idle:
            client = idle.pop()
        else:
            client = _Connection(host, port)
            opened.append(client)
        status = await client.send(request)
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
        for c in opened:
            c.close()
    return summarise("open", rate, latencies, statuses, elapsed, cpu)


async def burst_then_single(
    url: str, bodies: list[Body], *, burst: int, burst_s: float, after_s: float
) -> tuple[LoadResult, int]:
    """`burst` clients for `burst_s`, who then hang up with requests still in flight (as
    clients that time out do), then one client for `after_s`: its latency shows whether the
    server keeps computing work nobody waits for. Returns (the single client's result, how many
    requests were abandoned)."""
    host, port, requests = _requests(url, bodies)
    cycle = itertools.cycle(requests)
    clients = [_Connection(host, port) for _ in range(burst)]

    async def worker(client: _Connection) -> None:
        while True:
            await client.send(next(cycle))

    tasks = [asyncio.create_task(worker(c)) for c in clients]
    await asyncio.sleep(burst_s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    abandoned = sum(c.writer is not None for c in clients)
    for c in clients:
        c.close()  # the server sees each of these connections close mid-request
    single = await closed_loop(url, bodies, 1, seconds=after_s, max_requests=10**9, warmup_s=0)
    return single, abandoned
