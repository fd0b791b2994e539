"""In-process ceiling: decode + preprocess + ONNX Runtime in one process, no HTTP, best config
wins."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from cxr.imaging import PreprocessParams, preprocess_bytes
from cxr.runtime import keep_image_buffers, session_options


@dataclass(frozen=True)
class Config:
    """How the two stages share the cores: decode threads, ORT threads, batch, processes."""

    decode_threads: int
    ort_threads: int
    batch: int
    processes: int = 1

    def label(self) -> str:
        if self.processes > 1:
            return (
                f"{self.processes} processes × (serial decode + ORT 1 thread, batch {self.batch})"
            )
        return (
            f"{self.decode_threads} decode threads + ORT {self.ort_threads} thread(s), "
            f"batch {self.batch}"
        )


def open_session(model_path: Path, threads: int) -> ort.InferenceSession:
    """The service's own session options, so the ceiling measures the same ORT setup."""
    return ort.InferenceSession(
        str(model_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def _stream(images: list[bytes], n: int) -> Iterator[bytes]:
    for i in range(n):
        yield images[i % len(images)]


def run_threads(
    images: list[bytes],
    n: int,
    params: PreprocessParams,
    session: ort.InferenceSession,
    cfg: Config,
) -> tuple[float, float]:
    """(images/s, CPU ms per image) for n images: a decode pool runs ahead while the caller's
    thread runs ORT batches."""
    name = session.get_inputs()[0].name
    with ThreadPoolExecutor(cfg.decode_threads) as pool:
        cpu0, start = time.process_time(), time.perf_counter()
        tensors = pool.map(lambda b: preprocess_bytes(b, params), _stream(images, n))
        batch: list[npt.NDArray[np.float32]] = []
        for x in tensors:
            batch.append(x)
            if len(batch) == cfg.batch:
                session.run(None, {name: np.stack(batch)})
                batch = []
        if batch:
            session.run(None, {name: np.stack(batch)})
        return n / (time.perf_counter() - start), (time.process_time() - cpu0) * 1000 / n


def _process_worker(
    model_path: str,
    images: list[bytes],
    n: int,
    size: int,
    batch: int,
    barrier: mp.synchronize.Barrier,
    out: mp.Queue,
) -> None:
    keep_image_buffers()
    params = PreprocessParams(size=size)
    session = open_session(Path(model_path), 1)
    name = session.get_inputs()[0].name
    session.run(None, {name: np.zeros((batch, size, size, 1), np.float32)})  # warm-up
    barrier.wait()
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(0, n, batch):
        xs = [
            preprocess_bytes(images[(i + j) % len(images)], params)
            for j in range(min(batch, n - i))
        ]
        session.run(None, {name: np.stack(xs)})
    out.put((start, time.perf_counter(), time.process_time() - cpu0))


def run_processes(
    images: list[bytes], n: int, params: PreprocessParams, model_path: Path, cfg: Config
) -> tuple[float, float]:
    """(images/s, CPU ms per image) with `processes` independent serial workers, timed from a
    common barrier."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(cfg.processes), ctx.Queue()
    share = n // cfg.processes
    procs = [
        ctx.Process(
            target=_process_worker,
            args=(str(model_path), images, share, params.size, cfg.batch, barrier, out),
        )
        for _ in range(cfg.processes)
    ]
    for p in procs:
        p.start()
    spans = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join()
    total = share * cfg.processes
    wall = max(e for _, e, _ in spans) - min(s for s, _, _ in spans)
    return total / wall, sum(c for _, _, c in spans) * 1000 / total


def single_image_ms(
    images: list[bytes], n: int, params: PreprocessParams, session: ort.InferenceSession
) -> dict[str, float]:
    """One image at a time, decode then ORT batch 1: what an idle server could answer in."""
    name = session.get_inputs()[0].name
    times = []
    for data in _stream(images, n):
        t0 = time.perf_counter()
        session.run(None, {name: preprocess_bytes(data, params)[None]})
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def compute_only(model_path: Path, size: int, n: int, batch: int, threads: int) -> float:
    """Rows/s of ORT alone on pre-decoded tensors (what the v2 tensor path could reach at best)."""
    session = open_session(model_path, threads)
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 1)).astype(np.float32)
    session.run(None, {name: x})
    start = time.perf_counter()
    for _ in range(max(1, n // batch)):
        session.run(None, {name: x})
    return max(1, n // batch) * batch / (time.perf_counter() - start)


CONFIGS = [
    Config(2, 1, 16),
    Config(2, 2, 16),
    Config(3, 1, 32),
    Config(2, 1, 1),
    Config(1, 1, 16),
    Config(1, 1, 1, processes=2),
]
QUICK_CONFIGS = [Config(2, 1, 16), Config(2, 2, 16), Config(1, 1, 1, processes=2)]


def measure_ceiling(
    images: list[bytes], n: int, params: PreprocessParams, model_path: Path, configs: list[Config]
) -> dict[str, object]:
    """Try each config; the best throughput is the ceiling. Also the single-image latency."""
    keep_image_buffers()  # as the service does (cxr/runtime.py)
    sessions = {t: open_session(model_path, t) for t in {c.ort_threads for c in configs} | {1}}
    for s in sessions.values():  # warm-up: first runs allocate
        run_threads(images, min(n, 32), params, s, Config(2, 1, 16))
    tried = []
    for cfg in configs:
        if cfg.processes > 1:
            rate, cpu_ms = run_processes(images, n, params, model_path, cfg)
        else:
            rate, cpu_ms = run_threads(images, n, params, sessions[cfg.ort_threads], cfg)
        tried.append({**asdict(cfg), "label": cfg.label(), "images_per_s": rate, "cpu_ms": cpu_ms})
    best = max(tried, key=lambda t: t["images_per_s"])
    single = single_image_ms(images, max(50, n // 4), params, sessions[1])
    return {
        "images_per_s": best["images_per_s"],
        "best": best["label"],
        "best_config": asdict(
            Config(best["decode_threads"], best["ort_threads"], best["batch"], best["processes"])
        ),
        "cpu_ms": min(t["cpu_ms"] for t in tried),
        "tried": tried,
        "single_image": single,
    }


def merge(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """Two measurements of one ceiling (start and end of the run): keep the better of each, so a
    busy moment during one of them cannot flatter the service's ratios."""
    best = first if first["images_per_s"] >= again["images_per_s"] else again
    single = {
        k: min(first["single_image"][k], again["single_image"][k]) for k in first["single_image"]
    }
    return {
        **best,
        "cpu_ms": min(first["cpu_ms"], again["cpu_ms"]),
        "tried": first["tried"] + [{**t, "repeat": True} for t in again["tried"]],
        "single_image": single,
        "first_images_per_s": first["images_per_s"],
        "repeat_images_per_s": again["images_per_s"],
    }
