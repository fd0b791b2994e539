"""Bytes → prediction: preprocessing in a thread pool, then the shared batcher and ORT session."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image

from service import explain, guard, imaging
from service.batcher import Batcher, BatchResult
from service.errors import DeadlineExceeded, InputRejected, ModelNotReady, Overloaded
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.model import ModelMismatch, OnnxModel
from service.settings import Settings
from service.trust import AgeInterval, InputGuard

logger = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 256


class Prepared(NamedTuple):
    """A preprocessed image, how long it took, and what the image-level checks noticed."""

    x: npt.NDArray[np.float32]
    seconds: float
    warnings: list[dict[str, str]]


class Engine:
    """Everything a route needs to turn uploads into answers; one per app."""

    def __init__(self, settings: Settings, model: OnnxModel, metrics: Metrics,
                 lifecycle: Lifecycle) -> None:
        self.settings = settings
        self.model = model
        try:
            self.interval = AgeInterval.from_card(model.card)
            self.guard = InputGuard.from_card(model.card)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatch(f"card trust sections are not usable: {exc!r}") from None
        if model.params.size % settings.explain_grid:
            raise ModelMismatch(f"Config 'EXPLAIN_GRID' has value {settings.explain_grid}: it must "
                                f"divide the model's input size {model.params.size}")
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.batcher = Batcher(model.run, max_batch_size=settings.max_batch_size,
                               max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                               max_concurrent_batches=settings.max_concurrent_batches,
                               observer=metrics,
                               nothing_coming=(lambda: self._decoding == 0)
                               if settings.flush_when_idle else None)
        self._decoding = 0  # images being decoded now: the batcher waits for them, not longer
        self._admitted = 0  # images accepted and not yet answered
        self._explaining = 0  # explanations running (EXPLAIN_CONCURRENCY bounds it)
        self._pool = ThreadPoolExecutor(settings.preprocess_workers(), thread_name_prefix="preprocess")
        metrics.track_queue_depth(lambda: self.batcher.queued_rows)
        metrics.set_model(model.name, model.version, str(model.card["sha256"]))

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
        """Refuse work before warm-up; while draining, accepted work still runs."""
        if self.lifecycle.state == "starting":
            raise ModelNotReady(f"not ready: {self.lifecycle.reason()}")

    async def preprocess(self, data: bytes) -> Prepared:
        """One encoded file → model input (S, S, 1) off the event loop, with image warnings."""
        start = time.perf_counter()
        self._decoding += 1
        try:
            x, warnings = await asyncio.get_running_loop().run_in_executor(
                self._pool, _preprocess, data, self.model.params, self.settings.max_image_pixels)
        finally:
            self._decoding -= 1
        elapsed = time.perf_counter() - start
        self.metrics.preprocess_seconds.observe(elapsed)
        self.metrics.images.labels(format=imaging.sniff_format(data[:1024])).inc()
        return Prepared(x, elapsed, warnings)

    def check_capacity(self, images: int = 1) -> None:
        """429 now if `images` more would overflow MAX_QUEUE; routes call it before reading the
        upload, so a flood is refused without the server reading (or the client waiting on) it."""
        if self._admitted > 0 and self._admitted + images > self.settings.max_queue:
            self.metrics.rejected("queue_full")
            raise Overloaded(f"queue is full ({self._admitted} images in progress, limit "
                             f"{self.settings.max_queue} (MAX_QUEUE)); retry later",
                             retry_after_s=self.batcher.retry_after_s())

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

    async def infer(self, x: npt.NDArray[np.float32], *, deadline: float | None = None,
                    priority: int = 0) -> BatchResult:
        """Rows (k, S, S, 1) through the shared batcher, answered by `deadline` or 504."""
        self.check_ready()
        timeout_s = self.settings.request_timeout_ms / 1000
        if deadline is not None:
            timeout_s = deadline - time.monotonic()
            if timeout_s <= 0:
                self.metrics.rejected("deadline")
                raise DeadlineExceeded(
                    f"request spent over {self.settings.request_timeout_ms:g} ms before reaching "
                    "the model (REQUEST_TIMEOUT_MS); retry later")
        return await self.batcher.submit(x, timeout_s=timeout_s, priority=priority)

    def describe(self, outputs: dict[str, npt.NDArray[Any]], row: int = 0,
                 warnings: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """The prediction fields of one row, recorded in the drift metrics."""
        age = float(outputs["age"][row].reshape(-1)[0])
        p_male = float(outputs["p_male"][row].reshape(-1)[0])
        sex = "male" if p_male >= 0.5 else "female"
        self.metrics.prediction(age, sex)
        body: dict[str, Any] = {"age_years": age, "sex": sex, "p_male": p_male}
        interval = self.interval.around(age) if self.interval else None
        if interval:
            body["age_interval_90"] = interval
            self.metrics.interval_width.observe(interval[1] - interval[0])
        warning = self.guard.check(outputs, row) if self.guard else None
        body["warnings"] = [*(warnings or []), *([warning] if warning else [])]
        for w in body["warnings"]:
            self.metrics.input_warnings.labels(code=w["code"]).inc()
        return body

    async def predict_bytes(self, data: bytes) -> dict[str, Any]:
        """One encoded file → the /v1/predict response body."""
        start = time.perf_counter()
        self.check_ready()
        with self.admit(1) as deadline:
            prep = await self.preprocess(data)
            result = await self.infer(prep.x[None], deadline=deadline)
        pre_s = prep.seconds
        body = self.describe(result.outputs, 0, prep.warnings)
        if body["warnings"] and self.settings.strict_input_guard:
            raise InputRejected(f"{body['warnings'][0]['message']} (STRICT_INPUT_GUARD is on)")
        return {**body, "model": self.model_ref, "timings_ms": {
            "preprocess": round(pre_s * 1000, 3), "queue": round(result.queue_s * 1000, 3),
            "inference": round(result.compute_s * 1000, 3),
            "total": round((time.perf_counter() - start) * 1000, 3)}}

    async def explain_bytes(self, data: bytes) -> dict[str, Any]:
        """Occlusion sensitivity for one file: grid² + 1 variants as one low-priority batch."""
        self.check_ready()
        if self._explaining >= self.settings.explain_concurrency:
            self.metrics.rejected("explain_busy")
            raise Overloaded(f"{self._explaining} explanations already running (EXPLAIN_CONCURRENCY="
                             f"{self.settings.explain_concurrency}); retry later")
        grid = self.settings.explain_grid
        start = time.perf_counter()
        self._explaining += 1
        try:
            with self.admit(1) as deadline:
                x, pre_s, warnings = await self.preprocess(data)
                variants = explain.occlusion_batch(x, grid)
                # priority 1: single predictions queued at the same time go first
                result = await self.infer(variants, deadline=deadline, priority=1)
            loop = asyncio.get_running_loop()
            delta_age = explain.sensitivity(result.outputs["age"], grid)
            delta_p = explain.sensitivity(result.outputs["p_male"], grid)
            overlays = await asyncio.gather(
                loop.run_in_executor(self._pool, explain.overlay_png, x, delta_age),
                loop.run_in_executor(self._pool, explain.overlay_png, x, delta_p))
        finally:
            self._explaining -= 1
        first = {name: value[:1] for name, value in result.outputs.items()}
        body = self.describe(first, 0, warnings)
        if body["warnings"] and self.settings.strict_input_guard:  # same rule as /v1/predict
            raise InputRejected(f"{body['warnings'][0]['message']} (STRICT_INPUT_GUARD is on)")
        return {**body, "model": self.model_ref, "grid": grid,
                "patch_px": self.model.params.size // grid,
                "delta_age": np.round(delta_age, 4).tolist(),
                "delta_p_male": np.round(delta_p, 5).tolist(),
                "overlay_age_png": base64.b64encode(overlays[0]).decode(),
                "overlay_p_male_png": base64.b64encode(overlays[1]).decode(),
                "legend": explain.legend(delta_age, delta_p),
                "batch_size": result.batch_size,  # grid² + 1 variants went through as one batch
                "timings_ms": {"preprocess": round(pre_s * 1000, 3),
                               "queue": round(result.queue_s * 1000, 3),
                               "inference": round(result.compute_s * 1000, 3),
                               "total": round((time.perf_counter() - start) * 1000, 3)}}

    async def preview_png(self, data: bytes) -> bytes:
        """The cleaned grey image (borders cropped, longer side ≤ 256 px) as PNG."""
        with self.admit(1):  # decoding threads are shared: previews count against MAX_QUEUE too
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _preview, data, self.model.params, self.settings.max_image_pixels)


def _preprocess(data: bytes, params: imaging.PreprocessParams,
                max_pixels: int) -> tuple[npt.NDArray[np.float32], list[dict[str, str]]]:
    # one decode serves both the model input and the image-level guard (service/guard.py)
    x, facts = guard.preprocess_inspected(data, params, max_pixels=max_pixels)
    return x, guard.check(facts)


def _preview(data: bytes, params: imaging.PreprocessParams, max_pixels: int) -> bytes:
    gray = imaging.crop_borders(imaging.decode_image(data, max_pixels=max_pixels), params)
    img = Image.fromarray(gray, "L")
    img.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    return imaging.encode_png(np.asarray(img, dtype=np.uint8))
