"""Bytes → model outputs: admission, preprocessing in a thread pool, the shared batcher, ORT.

Uploads take one of two paths (INLINE_INFERENCE). *Inline* (the default on CPU): the decoding
thread runs ORT on the image as soon as it is decoded — one hop to a thread and one back. On a
CPU batching an upload buys little (ORT: 1.6 CPU ms per row in a batch of 16 against 2.0 alone)
and the trip through the batcher (event loop → batch thread → event loop) cost 2.5 CPU ms per
image (docs/performance.md). *Batched*: the decoded image joins the shared batcher like tensor
requests and explanations do, which pays off on an accelerator.

No response shaping here: the engine answers with plain results (`Inference`, `Explained`) and
the routes turn them into response models (service/routes_v1.py, routes_v2.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image

from cxr import guard, imaging
from cxr.card import AgeInterval
from service import explain
from service.batcher import Batcher, BatchResult
from service.errors import (
    DeadlineExceeded,
    InferenceFailed,
    InputRejected,
    ModelNotReady,
    Overloaded,
)
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.model import ModelMismatch, OnnxModel
from service.settings import Settings

logger = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 256
Warnings = list[dict[str, str]]


class _Computed(NamedTuple):
    """One upload decoded and run inline (in a decoding thread): outputs and where time went."""

    format: str
    outputs: dict[str, npt.NDArray[Any]]
    warnings: Warnings
    started: float  # perf_counter when a decoding thread took it
    preprocess_s: float
    compute_s: float


class Prepared(NamedTuple):
    """A preprocessed image, how long it took, and what the image-level checks noticed."""

    x: npt.NDArray[np.float32]
    seconds: float
    warnings: Warnings


@dataclass(frozen=True)
class Inference:
    """One image's prediction: the model's numbers, every warning, where the time went (ms)."""

    age: float
    p_male: float
    warnings: Warnings
    timings_ms: dict[str, float]

    @property
    def sex(self) -> str:
        return "male" if self.p_male >= 0.5 else "female"


@dataclass(frozen=True)
class Explained:
    """Occlusion sensitivity of one image (service/explain.py) with its prediction."""

    inference: Inference
    grid: int
    patch_px: int
    delta_age: npt.NDArray[np.float64]
    delta_p_male: npt.NDArray[np.float64]
    overlay_age_png: bytes
    overlay_p_male_png: bytes
    batch_size: int


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Engine:
    """Everything a route needs to turn uploads into model outputs; one per app."""

    def __init__(
        self, settings: Settings, model: OnnxModel, metrics: Metrics, lifecycle: Lifecycle
    ) -> None:
        self.settings = settings
        self.model = model
        self.interval: AgeInterval | None = model.card.age_interval
        stats = model.card.input_guard
        self.guard = guard.EmbeddingGuard.of(stats) if stats is not None else None
        if model.params.size % settings.explain_grid:
            raise ModelMismatch(
                f"Config 'EXPLAIN_GRID' has value {settings.explain_grid}: it must "
                f"divide the model's input size {model.params.size}"
            )
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.batcher = Batcher(
            model.run,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_concurrent_batches=settings.max_concurrent_batches,
            observer=metrics,
            nothing_coming=(lambda: self._decoding == 0) if settings.flush_when_idle else None,
        )
        self._decoding = 0  # images being decoded now: the batcher waits for them, not longer
        self._admitted = 0  # images accepted and not yet answered (MAX_QUEUE bounds it)
        self._explaining = 0  # explanations running (EXPLAIN_CONCURRENCY bounds it)
        self._pool = ThreadPoolExecutor(
            settings.preprocess_workers(), thread_name_prefix="preprocess"
        )
        mode = settings.inline_inference
        self.inline = mode == "on" or (mode == "auto" and model.on_cpu)
        metrics.set_model(model.name, model.version, model.card.sha256)

    @property
    def model_ref(self) -> dict[str, str]:
        return {"name": self.model.name, "version": self.model.version}

    async def start(self) -> None:
        """Start the batcher, then warm ORT up with one full batch and one single image."""
        await self.batcher.start()
        loop = asyncio.get_running_loop()
        for n in (self.settings.max_batch_size, 1):
            zeros = np.zeros((n, *self.model.input_shape), dtype=np.float32)
            await loop.run_in_executor(None, self.model.run, zeros)
        self.lifecycle.set_ready()

    async def stop(self) -> None:
        """Finish queued work (bounded by the drain timeout), then release the threads."""
        self.lifecycle.begin_drain()
        await self.batcher.close(self.settings.drain_timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check_ready(self) -> None:
        """Refuse work before warm-up; while draining, accepted work still runs. Called once per
        request, by the route's dependency (service/deps.py)."""
        if self.lifecycle.state == "starting":
            raise ModelNotReady(f"not ready: {self.lifecycle.reason()}")

    # Admission: the one place where MAX_QUEUE is enforced.
    def check_capacity(self, images: int = 1) -> None:
        """429 now if `images` more would overflow MAX_QUEUE; routes call it before reading the
        upload, so a flood is refused without the server reading (or the client waiting on) it."""
        if self._admitted > 0 and self._admitted + images > self.settings.max_queue:
            self.metrics.rejected("queue_full")
            raise Overloaded(
                f"queue is full ({self._admitted} images in progress, limit "
                f"{self.settings.max_queue} (MAX_QUEUE)); retry later",
                retry_after_s=self.batcher.retry_after_s(),
            )

    @contextmanager
    def admit(self, images: int = 1) -> Iterator[float]:
        """Hold `images` places in the service (decoding, queued or computing) or raise 429.

        Admission is counted from the moment work is accepted, not when it reaches the batcher:
        otherwise a flood would pile up unbounded in front of the decoding threads. Yields the
        request's deadline (monotonic seconds).
        """
        self.check_capacity(images)
        self._admitted += images
        try:
            yield time.monotonic() + self.settings.request_timeout_ms / 1000
        finally:
            self._admitted -= images

    async def preprocess(self, data: bytes) -> Prepared:
        """One encoded file → model input (S, S, 1) off the event loop, with image warnings."""
        start = time.perf_counter()
        self._decoding += 1
        try:
            fmt, x, warnings = await asyncio.get_running_loop().run_in_executor(
                self._pool, _preprocess, data, self.model.params, self.settings.max_image_pixels
            )
        finally:
            self._decoding -= 1
        elapsed = time.perf_counter() - start
        self.metrics.preprocess_seconds.observe(elapsed)
        self.metrics.images.labels(format=fmt).inc()
        return Prepared(x, elapsed, warnings)

    async def infer(
        self, x: npt.NDArray[np.float32], *, deadline: float, priority: int = 0
    ) -> BatchResult:
        """Rows (k, S, S, 1) through the shared batcher, answered by `deadline` or 504."""
        timeout_s = deadline - time.monotonic()
        if timeout_s <= 0:
            self.metrics.rejected("deadline")
            raise DeadlineExceeded(
                f"request spent over {self.settings.request_timeout_ms:g} ms before reaching "
                "the model (REQUEST_TIMEOUT_MS); retry later"
            )
        return await self.batcher.submit(x, timeout_s=timeout_s, priority=priority)

    def observe(
        self, outputs: dict[str, npt.NDArray[Any]], row: int, warnings: Warnings = ()
    ) -> Inference:
        """One row's prediction with every warning (image checks + embedding guard), recorded in
        the drift metrics. No timings: the caller adds them."""
        age = float(outputs["age"][row].reshape(-1)[0])
        p_male = float(outputs["p_male"][row].reshape(-1)[0])
        found = [*warnings]
        if self.guard is not None and (w := self.guard.check(outputs, row)) is not None:
            found.append(w)
        result = Inference(age, p_male, found, {})
        self.metrics.prediction(age, result.sex)
        if self.interval is not None and (b := self.interval.around(age)) is not None:
            self.metrics.interval_width.observe(b[1] - b[0])
        for w in found:
            self.metrics.input_warnings.labels(code=w["code"]).inc()
        return result

    def _strict(self, result: Inference) -> None:
        if result.warnings and self.settings.strict_input_guard:
            raise InputRejected(f"{result.warnings[0]['message']} (STRICT_INPUT_GUARD is on)")

    async def predict(self, data: bytes) -> Inference:
        """One encoded file → its prediction (422 when STRICT_INPUT_GUARD refuses it).

        Timings: inline, `queue` is the wait for a decoding thread and `preprocess` the decoding
        alone; batched, `preprocess` includes that wait and `queue` is the wait for a batch."""
        start = time.perf_counter()
        with self.admit(1) as deadline:
            if self.inline:
                done = await self._compute_inline(data, deadline, start)
                outputs, warnings = done.outputs, done.warnings
                timings = (done.preprocess_s, done.started - start, done.compute_s)
            else:
                prep = await self.preprocess(data)
                result = await self.infer(prep.x[None], deadline=deadline)
                outputs, warnings = result.outputs, prep.warnings
                timings = (prep.seconds, result.queue_s, result.compute_s)
        inference = self.observe(outputs, 0, warnings)
        self._strict(inference)
        return Inference(
            inference.age,
            inference.p_male,
            inference.warnings,
            {
                "preprocess": _ms(timings[0]),
                "queue": _ms(timings[1]),
                "inference": _ms(timings[2]),
                "total": _ms(time.perf_counter() - start),
            },
        )

    async def _compute_inline(self, data: bytes, deadline: float, submitted: float) -> _Computed:
        """Decode and run one upload in a decoding thread (module text), with the batcher's
        deadline rule and metrics: a batch of one that waited for a thread, not for company."""
        self._decoding += 1
        try:
            done = await asyncio.get_running_loop().run_in_executor(
                self._pool,
                _decode_and_run,
                data,
                self.model,
                self.settings.max_image_pixels,
                deadline,
                self.settings.request_timeout_ms,
            )
        except DeadlineExceeded:
            self.metrics.rejected("deadline")
            raise
        finally:
            self._decoding -= 1
        self.metrics.preprocess_seconds.observe(done.preprocess_s)
        self.metrics.images.labels(format=done.format).inc()
        self.metrics.queue_wait(done.started - submitted)
        self.metrics.batch_done(1, done.compute_s)
        return done

    async def explain(self, data: bytes) -> Explained:
        """Occlusion sensitivity for one file: grid² + 1 variants as one low-priority batch."""
        if self._explaining >= self.settings.explain_concurrency:
            self.metrics.rejected("explain_busy")
            raise Overloaded(
                f"{self._explaining} explanations already running (EXPLAIN_CONCURRENCY="
                f"{self.settings.explain_concurrency}); retry later"
            )
        grid = self.settings.explain_grid
        start = time.perf_counter()
        self._explaining += 1
        try:
            with self.admit(1) as deadline:
                prep = await self.preprocess(data)
                variants = explain.occlusion_batch(prep.x, grid)
                # priority 1: single predictions queued at the same time go first
                result = await self.infer(variants, deadline=deadline, priority=1)
            loop = asyncio.get_running_loop()
            delta_age = explain.sensitivity(result.outputs["age"], grid)
            delta_p = explain.sensitivity(result.outputs["p_male"], grid)
            overlays = await asyncio.gather(
                loop.run_in_executor(self._pool, explain.overlay_png, prep.x, delta_age),
                loop.run_in_executor(self._pool, explain.overlay_png, prep.x, delta_p),
            )
        finally:
            self._explaining -= 1
        first = {name: value[:1] for name, value in result.outputs.items()}
        inference = self.observe(first, 0, prep.warnings)
        self._strict(inference)  # same rule as /v1/predict
        timings = {
            "preprocess": _ms(prep.seconds),
            "queue": _ms(result.queue_s),
            "inference": _ms(result.compute_s),
            "total": _ms(time.perf_counter() - start),
        }
        return Explained(
            Inference(inference.age, inference.p_male, inference.warnings, timings),
            grid,
            self.model.params.size // grid,
            delta_age,
            delta_p,
            overlays[0],
            overlays[1],
            result.batch_size,
        )

    async def preview_png(self, data: bytes) -> bytes:
        """The cleaned grey image (borders cropped, longer side ≤ 256 px) as PNG."""
        with self.admit(1):  # decoding threads are shared: previews count against MAX_QUEUE too
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _preview, data, self.model.params, self.settings.max_image_pixels
            )


def _preprocess(
    data: bytes, params: imaging.PreprocessParams, max_pixels: int
) -> tuple[str, npt.NDArray[np.float32], Warnings]:
    # one decode serves both the model input and the image-level guard (cxr/guard.py)
    decoded = imaging.decode(data, max_pixels=max_pixels)
    x, warnings = guard.inspect_image(decoded, params)
    return decoded.format, x, warnings


def _decode_and_run(
    data: bytes, model: OnnxModel, max_pixels: int, deadline: float, timeout_ms: float
) -> _Computed:
    """Engine._compute_inline's thread half: decode + guard, then ORT on the one row."""
    started = time.perf_counter()
    fmt, x, warnings = _preprocess(data, model.params, max_pixels)
    decoded = time.perf_counter()
    if time.monotonic() >= deadline:
        raise DeadlineExceeded(
            f"request spent over {timeout_ms:g} ms before reaching the model "
            "(REQUEST_TIMEOUT_MS); retry later"
        )
    try:
        outputs = model.run(x[None])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types; the client gets a 500
        raise InferenceFailed(
            f"inference failed for a batch of 1: {type(exc).__name__}: {exc}"
        ) from None
    return _Computed(
        fmt, outputs, warnings, started, decoded - started, time.perf_counter() - decoded
    )


def _preview(data: bytes, params: imaging.PreprocessParams, max_pixels: int) -> bytes:
    gray = imaging.crop_borders(imaging.decode_image(data, max_pixels=max_pixels), params)
    img = Image.fromarray(gray, "L")
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    return imaging.encode_png(np.asarray(img, dtype=np.uint8))
