"""The batcher on its own: real asyncio, real threads, a numpy compute function."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batcher import Batcher
from service.errors import DeadlineExceeded, InferenceFailed, ModelNotReady


class Recorder:
    """A BatchObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.rejections: list[str] = []
        self.waits: list[float] = []

    def batch_done(self, size: int, compute_s: float) -> None:
        self.sizes.append(size)

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def rejected(self, reason: str) -> None:
        self.rejections.append(reason)

    def queue_changed(self, rows: int) -> None:
        self.depth = rows


def double(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": x.reshape(len(x), -1).sum(axis=1, keepdims=True) * 2}


def rows(*values: float) -> list[np.ndarray]:
    return [np.full((1, 2, 2, 1), v, np.float32) for v in values]


def run(coro):
    return asyncio.run(coro)


def test_parameters_validated() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(double, max_batch_size=0, max_wait_ms=1)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batcher(double, max_batch_size=1, max_wait_ms=-1)


def test_concurrent_items_batch_and_keep_their_rows() -> None:
    obs = Recorder()

    async def main():
        b = Batcher(double, max_batch_size=4, max_wait_ms=50, observer=obs)
        await b.start()
        results = await asyncio.gather(*(b.submit(x, timeout_s=5) for x in rows(*range(10))))
        await b.close(1)
        return results

    results = run(main())
    assert [float(r.outputs["y"][0, 0]) for r in results] == [8.0 * v for v in range(10)]
    assert sum(obs.sizes) == 10 and max(obs.sizes) == 4 and len(obs.sizes) == 3


def test_single_item_flushes_after_max_wait_not_later() -> None:
    obs = Recorder()

    async def main():
        b = Batcher(double, max_batch_size=8, max_wait_ms=20, observer=obs)
        await b.start()
        r = await b.submit(rows(1)[0], timeout_s=5)
        await b.close(1)
        return r

    r = run(main())
    assert r.batch_size == 1 and obs.sizes == [1]
    assert obs.waits[0] >= 0.019  # it did wait for company (max_wait), then flushed alone


def test_big_item_runs_as_one_batch_and_priority_orders() -> None:
    obs = Recorder()
    order: list[float] = []
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        order.extend(x[:, 0, 0, 0].tolist())
        return double(x)

    async def main():
        b = Batcher(slow, max_batch_size=2, max_wait_ms=0, observer=obs)
        await b.start()
        first = asyncio.create_task(b.submit(rows(0)[0], timeout_s=5))
        await asyncio.sleep(0.05)  # first batch is now blocked in compute
        bulk = asyncio.create_task(
            b.submit(np.concatenate(rows(*[7] * 5)), timeout_s=5, priority=1)
        )
        await asyncio.sleep(0.01)
        urgent = asyncio.create_task(b.submit(rows(3)[0], timeout_s=5, priority=0))
        await asyncio.sleep(0.01)
        gate.set()
        res = await asyncio.gather(first, bulk, urgent)
        await b.close(1)
        return res

    _, bulk, _ = run(main())
    assert order == [0, 3, 7, 7, 7, 7, 7]  # priority 0 overtook the earlier bulk item
    assert bulk.batch_size == 5 and bulk.outputs["y"].shape == (5, 1)
    assert obs.sizes == [1, 1, 5]


def test_deadline_expired_items_are_dropped_before_compute() -> None:
    gate = threading.Event()
    computed: list[float] = []
    obs = Recorder()

    def blocked(x):
        gate.wait(5)
        computed.extend(x[:, 0, 0, 0].tolist())
        return double(x)

    async def main():
        b = Batcher(blocked, max_batch_size=1, max_wait_ms=0, observer=obs)
        await b.start()
        running = asyncio.create_task(b.submit(rows(1)[0], timeout_s=5))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await b.submit(rows(2)[0], timeout_s=0.1)
        waited = time.monotonic() - start
        gate.set()
        await running
        await asyncio.sleep(0.05)
        await b.close(1)
        return waited

    waited = run(main())
    assert waited < 2  # answered at its deadline, not when the blocked batch finished
    assert computed == [1.0] and "deadline" in obs.rejections


def test_compute_failure_fails_whole_batch_then_recovers() -> None:
    def flaky(x):
        if (x > 50).any():
            raise RuntimeError("boom in the model")
        return double(x)

    async def main():
        b = Batcher(flaky, max_batch_size=4, max_wait_ms=30)
        await b.start()
        bad = await asyncio.gather(
            *(b.submit(x, timeout_s=5) for x in rows(1, 99, 2)), return_exceptions=True
        )
        good = await b.submit(rows(5)[0], timeout_s=5)
        await b.close(1)
        return bad, good

    bad, good = run(main())
    assert all(isinstance(e, InferenceFailed) and "boom in the model" in e.message for e in bad)
    assert float(good.outputs["y"][0, 0]) == 40.0


def test_wrong_output_length_is_a_failure() -> None:
    async def main():
        b = Batcher(lambda x: {"y": np.zeros((len(x) + 1, 1))}, max_batch_size=2, max_wait_ms=0)
        await b.start()
        with pytest.raises(InferenceFailed, match="rows for a batch of 1"):
            await b.submit(rows(1)[0], timeout_s=5)
        await b.close(1)

    run(main())


def test_close_drains_queued_work_then_refuses() -> None:
    def slowish(x):
        time.sleep(0.05)
        return double(x)

    async def main():
        b = Batcher(slowish, max_batch_size=1, max_wait_ms=0)
        await b.start()
        pending = [asyncio.create_task(b.submit(x, timeout_s=5)) for x in rows(1, 2, 3, 4)]
        await asyncio.sleep(0.01)
        await b.close(5)
        results = await asyncio.gather(*pending)
        with pytest.raises(ModelNotReady):
            await b.submit(rows(1)[0], timeout_s=5)
        return results

    results = run(main())
    assert [float(r.outputs["y"][0, 0]) for r in results] == [8.0, 16.0, 24.0, 32.0]


def test_flushes_at_once_when_nothing_else_is_coming() -> None:
    obs = Recorder()
    coming = {"n": 0}

    async def main():
        b = Batcher(
            double,
            max_batch_size=8,
            max_wait_ms=2000,
            observer=obs,
            nothing_coming=lambda: coming["n"] == 0,
        )
        await b.start()
        start = time.monotonic()
        await b.submit(rows(1)[0], timeout_s=5)
        alone = time.monotonic() - start
        coming["n"] = 1  # another item is being decoded: wait for it
        first = asyncio.create_task(b.submit(rows(2)[0], timeout_s=5))
        await asyncio.sleep(0.1)
        coming["n"] = 0
        second = await b.submit(rows(3)[0], timeout_s=5)
        await first
        await b.close(1)
        return alone, second

    alone, second = run(main())
    assert alone < 1.0  # far below max_wait: no pointless wait at concurrency 1
    assert second.batch_size == 2 and obs.sizes == [1, 2]


def test_cancelled_waiter_is_not_computed() -> None:
    gate = threading.Event()
    computed: list[float] = []

    def blocked(x):
        gate.wait(5)
        computed.extend(x[:, 0, 0, 0].tolist())
        return double(x)

    async def main():
        b = Batcher(blocked, max_batch_size=1, max_wait_ms=0)
        await b.start()
        running = asyncio.create_task(b.submit(rows(1)[0], timeout_s=5))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(b.submit(rows(2)[0], timeout_s=5))
        await asyncio.sleep(0.01)
        gone.cancel()
        kept = asyncio.create_task(b.submit(rows(3)[0], timeout_s=5))
        await asyncio.sleep(0.01)
        gate.set()
        await running
        await kept
        await b.close(1)

    run(main())
    assert computed == [1.0, 3.0]
