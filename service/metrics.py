"""Every Prometheus metric of the service, in one registry per app (tests build many apps).

With several worker processes (service/workers.py) prometheus-client runs in multiprocess mode
(PROMETHEUS_MULTIPROC_DIR): each worker writes its samples to files there and /metrics, answered
by any worker, merges all of them. Counters and histograms are summed; the gauges say how they
merge (`multiprocess_mode`): `livesum` (the sum over the workers alive now), except
`cxr_worker_connections`: one series per live worker (`liveall`, a pid label), so the balance
shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_AGE_BUCKETS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


class Metrics:
    """The service's metrics; also the batcher's observer."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "cxr_request_duration_seconds",
            "End-to-end HTTP request time.",
            ["endpoint", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "cxr_requests_total",
            "HTTP requests by route template and status code.",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "cxr_requests_in_flight",
            "HTTP requests being handled.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.rejections = Counter(
            "cxr_rejections_total", "Requests refused, by reason.", ["reason"], registry=r
        )
        self.queue_wait_seconds = Histogram(
            "cxr_queue_wait_seconds",
            "Time an item waited in the batcher before compute.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess_seconds = Histogram(
            "cxr_preprocess_duration_seconds",
            "Decode + clean + resize time per image.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "cxr_inference_batch_duration_seconds",
            "ONNX Runtime time per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "cxr_batch_size", "Rows per ONNX Runtime batch.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "cxr_queue_depth",
            "Images waiting in the batcher.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.connections = Gauge(
            "cxr_worker_connections",
            "Open client connections served by this worker process (one series per worker pid;"
            " set when several workers share the port).",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.connections_passed = Counter(
            "cxr_connections_passed_total",
            "New connections a worker passed to a less busy worker when it accepted them.",
            registry=r,
        )
        self.model_info = Info("cxr_model", "The model being served.", registry=r)
        self.predicted_age = Histogram(
            "cxr_predicted_age_years",
            "Predicted ages (input drift shows here).",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.predicted_sex = Counter(
            "cxr_predicted_sex_total", "Predicted sex labels.", ["sex"], registry=r
        )
        self.input_warnings = Counter(
            "cxr_input_warnings_total",
            "Warnings attached to predictions, by code.",
            ["code"],
            registry=r,
        )
        self.interval_width = Histogram(
            "cxr_age_interval_width_years",
            "Width of the 90 % age interval.",
            buckets=(5, 10, 20, 30, 40, 50, 60, 80),
            registry=r,
        )
        self.images = Counter(
            "cxr_images_total", "Images preprocessed, by detected format.", ["format"], registry=r
        )
        self.verify_checks = Counter(
            "cxr_verify_checks_total",
            "Wrong-patient checks (/v1/verify), by decision and mode.",
            ["decision", "mode"],
            registry=r,
        )
        self.verify_flags = Counter(
            "cxr_verify_flags_total", "Wrong-patient checks that flagged a mismatch.", registry=r
        )

        self._model: dict[str, str] = {}
        self._multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

    def set_model(self, name: str, version: str, sha256: str) -> None:
        """Publish which model answers."""
        self._model = {"name": name, "version": version, "sha256": sha256}
        self.model_info.info(self._model)

    def exposition(self) -> tuple[bytes, str]:
        """The text /metrics answers (all workers merged in multiprocess mode), content type."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self._multiprocess_dir)
        merged.register(_ModelInfo(self._model))  # Info has no multiprocess mode; all workers
        return generate_latest(merged), CONTENT_TYPE_LATEST  # serve the same model

    # ConnectionObserver (service/balance.py)
    def connections_changed(self, open_here: int) -> None:
        self.connections.set(open_here)

    def connection_passed(self) -> None:
        self.connections_passed.inc()

    # BatchObserver
    def queue_changed(self, rows: int) -> None:
        self.queue_depth.set(rows)

    def batch_done(self, size: int, compute_s: float) -> None:
        self.batch_size.observe(size)
        self.compute_seconds.observe(compute_s)

    def queue_wait(self, seconds: float) -> None:
        self.queue_wait_seconds.observe(seconds)

    def rejected(self, reason: str) -> None:
        self.rejections.labels(reason=reason).inc()

    def refused(self, status: int) -> None:
        """Count a request refused for its input, auth or readiness (the batcher counts the
        rest)."""
        reason = {
            401: "unauthorized",
            503: "not_ready",
            400: "bad_input",
            413: "bad_input",
            415: "bad_input",
            422: "bad_input",
        }.get(status)
        if reason:
            self.rejections.labels(reason=reason).inc()

    def prediction(self, age: float, sex: str) -> None:
        """Record one prediction's distribution."""
        self.predicted_age.observe(age)
        self.predicted_sex.labels(sex=sex).inc()

    def verification(self, decision: str, mode: str) -> None:
        """Count one wrong-patient check; a mismatch also counts as a flag."""
        self.verify_checks.labels(decision=decision, mode=mode).inc()
        if decision == "mismatch":
            self.verify_flags.inc()


class _ModelInfo:
    def __init__(self, labels: dict[str, str]) -> None:
        self._labels = labels

    def collect(self) -> Iterator[InfoMetricFamily]:
        if self._labels:
            yield InfoMetricFamily("cxr_model", "The model being served.", value=self._labels)
