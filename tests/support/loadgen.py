"""A small closed-loop load generator for the reliability tests (loopback only, bounded in time):
`workers` clients each send, wait for the answer, and send again until told to stop. Every upload
carries SECRET_NAME as its client file name, which no service log may ever contain."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

# Every upload in the reliability tests carries this client file name; no log may ever contain it.
SECRET_NAME = "Doe_Jane_1953-04-02_MRN-8812734"


@dataclass
class Outcome:
    status: int | None  # None: no HTTP answer (the request was lost)
    seconds: float
    error: str = ""
    retry_after: str | None = None
    body: dict = field(default_factory=dict)


@dataclass
class Tally:
    """Everything the generator saw; `lost` = sent and never answered."""

    outcomes: list[Outcome] = field(default_factory=list)
    refused_connections: int = 0  # nobody listening: never sent, so not lost

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def answered(self) -> int:
        return sum(o.status is not None for o in self.outcomes)

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    def statuses(self) -> Counter[int | None]:
        return Counter(o.status for o in self.outcomes)

    def seconds(self, status: int) -> list[float]:
        return sorted(o.seconds for o in self.outcomes if o.status == status)

    def summary(self) -> str:
        def pct(xs: list[float], q: float) -> str:
            return f"{xs[min(len(xs) - 1, int(q * len(xs)))] * 1000:.0f}" if xs else "-"

        parts = [
            f"sent {self.sent}, answered {self.answered}, lost {self.lost}",
            f"statuses {dict(self.statuses())}",
        ]
        for status in (200, 429):
            xs = self.seconds(status)
            if xs:
                parts.append(
                    f"{status} latency p50 {pct(xs, 0.5)} / p99 {pct(xs, 0.99)} / "
                    f"max {xs[-1] * 1000:.0f} ms"
                )
        return "; ".join(parts)


async def run_load(
    url: str,
    payloads: list[bytes],
    *,
    workers: int,
    duration_s: float,
    stop: asyncio.Event | None = None,
    fresh_connections: bool = False,
    on_tick: Callable[[], None] | None = None,
) -> Tally:
    """POST /v1/predict in a closed loop from `workers` clients for `duration_s` (or until stop)."""
    tally = Tally()
    stop = stop or asyncio.Event()
    end = time.monotonic() + duration_s
    headers = {"Connection": "close"} if fresh_connections else {}

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        n = i
        while not stop.is_set() and time.monotonic() < end:
            data = payloads[n % len(payloads)]
            n += workers
            start = time.monotonic()
            try:
                r = await client.post(
                    f"{url}/v1/predict",
                    headers=headers,
                    files={"file": (f"{SECRET_NAME}.png", data)},
                )
            except httpx.ConnectError:
                tally.refused_connections += 1
                await asyncio.sleep(0.01)
                continue
            except httpx.HTTPError as exc:  # sent (at least partly) and no answer came back
                tally.outcomes.append(Outcome(None, time.monotonic() - start, repr(exc)))
                continue
            body = (
                r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            )
            tally.outcomes.append(
                Outcome(
                    r.status_code,
                    time.monotonic() - start,
                    retry_after=r.headers.get("retry-after"),
                    body=body,
                )
            )

    async def ticker() -> None:
        while not stop.is_set() and time.monotonic() < end:
            if on_tick:
                on_tick()
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(ticker(), *(worker(i, client) for i in range(workers)))
    return tally
