"""Dynamic micro-batching in front of one compute function (no web framework in here).

Each pending item is (rows, future). A batch is flushed when it is full or when its oldest item
has waited `max_wait_ms` (or at once when the caller says nothing else is on its way); while a
batch computes, new items pile up and form the next one, so an idle server adds no wait and a
busy one batches by itself. Compute runs in its own thread pool, off the event loop. Lower
`priority` numbers go first, which lets bulk work (explanations) yield to single predictions.
How much work may wait is decided before it gets here, once, by the engine's admission
(MAX_QUEUE); the batcher only reports its depth and an estimate for Retry-After.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.errors import ApiError, DeadlineExceeded, InferenceFailed, ModelNotReady

Outputs = dict[str, npt.NDArray[Any]]
ComputeFn = Callable[[npt.NDArray[np.float32]], Outputs]


class BatchObserver(Protocol):
    """What the batcher reports (service/metrics.py implements it)."""

    def batch_done(self, size: int, compute_s: float) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def rejected(self, reason: str) -> None: ...
    def queue_changed(self, rows: int) -> None: ...


class _NullObserver:
    def batch_done(self, size: int, compute_s: float) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        pass

    def rejected(self, reason: str) -> None:
        pass

    def queue_changed(self, rows: int) -> None:
        pass


@dataclass(frozen=True)
class BatchResult:
    """One item's rows of every output, plus where its time went."""

    outputs: Outputs
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass(order=True)
class _Pending:
    priority: int
    seq: int
    x: npt.NDArray[np.float32] = field(compare=False)
    future: asyncio.Future[BatchResult] = field(compare=False)
    enqueued: float = field(compare=False)
    deadline: float = field(compare=False)
    started: bool = field(default=False, compare=False)


class Batcher:
    """Collects items of shape (k, …) into batches of at most `max_batch_size` rows."""

    def __init__(
        self,
        compute: ComputeFn,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_concurrent_batches: int = 1,
        observer: BatchObserver | None = None,
        nothing_coming: Callable[[], bool] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_concurrent_batches < 1:
            raise ValueError(f"max_concurrent_batches must be >= 1, got {max_concurrent_batches}")
        self._compute = compute
        self.max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_concurrent = max_concurrent_batches
        self._observer: BatchObserver = observer or _NullObserver()
        # When the caller knows no more items are on their way (none being decoded), waiting for
        # company only adds latency: flush at once. None = always honour max_wait.
        self._nothing_coming = nothing_coming
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._rows = 0  # rows waiting in the heap
        self._computing = 0
        self._closing = False
        self._batch_s = 0.01  # running estimate of one batch's compute time, for Retry-After
        # asyncio primitives bind to a loop on first use, not here (Python ≥ 3.10)
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._slots = asyncio.Semaphore(max_concurrent_batches)
        self._executor = ThreadPoolExecutor(
            max_concurrent_batches, thread_name_prefix="batch-compute"
        )
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued_rows(self) -> int:
        """Rows waiting for compute (the queue-depth gauge)."""
        return self._rows

    async def start(self) -> None:
        """Start the flush loop on the running event loop."""
        self._runner = asyncio.create_task(self._run(), name="batcher")

    async def submit(
        self, x: npt.NDArray[np.float32], *, timeout_s: float, priority: int = 0
    ) -> BatchResult:
        """Queue k rows (shape (k, …)) and wait for their outputs; raise an ApiError if not."""
        if self._runner is None or self._closing:
            raise ModelNotReady("server is draining or not started; not accepting new work")
        rows = int(x.shape[0])
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        item = _Pending(priority, next(self._seq), x, loop.create_future(), now, now + timeout_s)
        heapq.heappush(self._heap, item)
        self._rows += rows
        self._observer.queue_changed(self._rows)
        self._idle.clear()
        self._changed.set()
        try:
            done, _ = await asyncio.wait({item.future}, timeout=timeout_s)
        except asyncio.CancelledError:  # the caller went away (e.g. its client disconnected)
            item.future.cancel()
            self._drop(item)
            raise
        if not done and not item.started and not item.future.done():
            self._observer.rejected("deadline")
            item.future.set_exception(
                DeadlineExceeded(
                    f"request waited {timeout_s * 1000:.0f} ms in the queue without being computed "
                    "(REQUEST_TIMEOUT_MS); retry later"
                )
            )
        return await item.future

    def _drop(self, item: _Pending) -> None:
        """Take a cancelled item out of the queue now, so nobody waits behind work nobody wants."""
        if item.started:
            return  # already in a running batch: its rows are computed and thrown away
        try:
            self._heap.remove(item)
        except ValueError:
            return
        heapq.heapify(self._heap)
        self._rows -= int(item.x.shape[0])
        self._observer.queue_changed(self._rows)
        self._changed.set()  # the flush loop re-checks what is left
        self._mark_idle()

    async def close(self, timeout_s: float) -> None:
        """Stop taking work, let queued and running batches finish (bounded), then stop."""
        self._closing = True
        if self._runner is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            pass
        self._runner.cancel()
        for item in self._heap:
            if not item.future.done():
                item.future.set_exception(ModelNotReady("server shut down before this request ran"))
        self._heap.clear()
        self._rows = 0
        self._observer.queue_changed(0)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._runner = None

    def retry_after_s(self) -> float:
        """Seconds until the queue ahead has likely drained (at least 1)."""
        batches_ahead = math.ceil(self._rows / self.max_batch_size) / self._max_concurrent
        return max(1.0, math.ceil(batches_ahead * self._batch_s))

    async def _run(self) -> None:
        while True:
            while not self._heap:
                self._changed.clear()
                await self._changed.wait()
            await self._slots.acquire()
            await self._wait_to_fill()
            batch = self._take()
            if not batch:
                self._slots.release()
                self._mark_idle()
                continue
            task = asyncio.create_task(self._compute_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wait_to_fill(self) -> None:
        """Wait until a full batch is queued or the oldest item has waited max_wait."""
        while self._heap and self._rows < self.max_batch_size:
            if self._nothing_coming is not None and self._nothing_coming():
                return
            oldest = min(item.enqueued for item in self._heap)
            remaining = oldest + self._max_wait_s - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        """Pop the next batch in priority order, answering expired items with 504 first."""
        batch: list[_Pending] = []
        rows = 0
        now = time.monotonic()
        while self._heap:
            item = self._heap[0]
            k = int(item.x.shape[0])
            if item.future.done():  # client gone, or already answered 504
                heapq.heappop(self._heap)
                self._rows -= k
                continue
            if item.deadline <= now:
                heapq.heappop(self._heap)
                self._rows -= k
                self._observer.rejected("deadline")
                item.future.set_exception(
                    DeadlineExceeded(
                        f"request waited {(now - item.enqueued) * 1000:.0f} ms in the queue, past "
                        f"its "
                        "deadline (REQUEST_TIMEOUT_MS); retry later"
                    )
                )
                continue
            if batch and rows + k > self.max_batch_size:
                break
            heapq.heappop(self._heap)
            self._rows -= k
            item.started = True
            batch.append(item)
            rows += k
        self._observer.queue_changed(self._rows)
        return batch

    async def _compute_batch(self, batch: list[_Pending]) -> None:
        self._computing += 1
        start = time.monotonic()
        for item in batch:
            self._observer.queue_wait(start - item.enqueued)
        x = batch[0].x if len(batch) == 1 else np.concatenate([item.x for item in batch])
        n = int(x.shape[0])
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._compute, x
            )
            bad = {name: len(v) for name, v in outputs.items() if len(v) != n}
            if bad:
                raise InferenceFailed(f"model returned {bad} rows for a batch of {n}")
        except Exception as exc:  # noqa: BLE001 - every failure must reach every waiting client
            message = (
                exc.message
                if isinstance(exc, ApiError)
                else (f"inference failed for a batch of {n}: {type(exc).__name__}: {exc}")
            )
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(InferenceFailed(message))
            outputs = None
        finally:
            compute_s = time.monotonic() - start
            self._computing -= 1
            self._slots.release()
        self._batch_s = 0.8 * self._batch_s + 0.2 * compute_s
        self._observer.batch_done(n, compute_s)
        if outputs is not None:
            offset = 0
            for item in batch:
                k = int(item.x.shape[0])
                rows = {name: v[offset : offset + k] for name, v in outputs.items()}
                offset += k
                if not item.future.done():
                    item.future.set_result(BatchResult(rows, start - item.enqueued, compute_s, n))
        self._mark_idle()

    def _mark_idle(self) -> None:
        if not self._heap and self._computing == 0:
            self._idle.set()
