"""`python -m service.profile`: where a request's CPU goes, stage by stage (the benchmarks'
profile mode runs it in a subprocess and compares it with the server under load).

Each stage is timed alone, in this process, on the benchmark's own upload (CPU time, single
thread, ORT on 1 thread), with the service's own code: HTTP parsing (httptools, as uvicorn uses
it), reading the body, multipart parsing, decoding, resizing, the image guard, ORT, the JSON
answer, the metrics a request records (plain and in Prometheus multiprocess mode), and the whole
app called in-process through ASGI (FastAPI routing, dependencies, middleware) with no socket.
What the server spends beyond the sum under load (`unattributed`) is the event loop, socket I/O,
thread hand-offs and contention with the neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools


@dataclass(frozen=True)
class Body:
    """One ready-to-send HTTP request body with its content type."""

    content: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


CHUNK = 65536  # what the event loop hands uvicorn per read, at most


def cpu_ms(fn: Callable[[], object], n: int) -> float:
    """CPU ms per call of fn (all threads of this process), after one warm-up call."""
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) * 1000 / n


def _request_bytes(path: str, body: Body) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1:8000",
        f"Content-Type: {body.content_type}",
        f"Content-Length: {len(body.content)}",
        *(f"{k}: {v}" for k, v in body.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body.content


class _Parsed:
    """The callbacks uvicorn's httptools protocol implements, keeping what it keeps."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)


def http_parse(raw: bytes) -> None:
    parsed = _Parsed()
    parser = httptools.HttpRequestParser(parsed)
    for i in range(0, len(raw), CHUNK):
        parser.feed_data(raw[i : i + CHUNK])


def _scope(path: str, body: Body, state: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", body.content_type.encode()),
        (b"content-length", str(len(body.content)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in body.headers),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state or {}),
    }


def _receiver(content: bytes) -> Callable[[], Any]:
    chunks = [content[i : i + CHUNK] for i in range(0, len(content), CHUNK)] or [b""]
    it = iter(enumerate(chunks))

    async def receive() -> dict[str, Any]:
        for i, chunk in it:
            return {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        await asyncio.Event().wait()  # after the body only a disconnect could come: never here
        return {"type": "http.disconnect"}

    return receive


def _metrics_cost(n: int) -> float:
    from service.metrics import Metrics

    m = Metrics()
    m.set_model("m", "1", "0" * 64)

    def one_request() -> None:  # what one /v1/predict records, in order
        m.in_flight.inc()
        m.preprocess_seconds.observe(0.01)
        m.images.labels(format="png").inc()
        m.queue_changed(1)
        m.queue_changed(0)
        m.queue_wait(0.001)
        m.batch_done(1, 0.001)
        m.prediction(50.0, "male")
        m.interval_width.observe(20.0)
        m.in_flight.dec()
        m.request_seconds.labels("/v1/predict", "POST").observe(0.02)
        m.requests.labels("/v1/predict", "POST", "200").inc()

    return cpu_ms(one_request, n)


def _metrics_cost_multiprocess(n: int) -> float:
    """The same in Prometheus multiprocess mode (values in mmap files), in a fresh interpreter."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="cxr-prof-metrics-") as folder:
        code = f"from service.profile import _metrics_cost; print(_metrics_cost({n}))"
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder},
            cwd=Path(__file__).resolve().parent.parent,
            check=True,
            timeout=120,
        )
    return float(out.stdout.strip().splitlines()[-1])


def profile_stages(model_dir: Path, png: bytes, body: Body, n: int = 60) -> dict[str, Any]:
    """CPU ms per request by stage for one multipart upload of `png` (see the module text)."""
    from starlette.requests import Request

    from cxr import guard, imaging
    from service.app import create_app
    from service.engine import _preprocess
    from service.model import load_model
    from service.schemas import ModelRef, Prediction
    from service.settings import Settings
    from service.uploads import read_body, read_multipart, upload_body_limit

    settings = Settings(
        model_dir=model_dir, workers=1, preprocess_threads=1, ort_intra_op_threads=1, max_wait_ms=0
    )
    model = load_model(settings.model_path, settings.card_path, intra_op_threads=1)
    params = model.params
    raw = _request_bytes("/v1/predict", body)
    loop = asyncio.new_event_loop()

    def read_raw() -> None:
        request = Request(_scope("/v1/predict", Body(png, "image/png")), _receiver(png))
        loop.run_until_complete(read_body(request, settings.max_upload_bytes))

    def read_form() -> None:
        request = Request(_scope("/v1/predict", body), _receiver(body.content))
        loop.run_until_complete(
            read_multipart(
                request,
                per_file_limit=settings.max_upload_bytes,
                total_limit=upload_body_limit(settings.max_upload_bytes),
                max_parts=16,
            )
        )

    decoded = imaging.decode(png, max_pixels=settings.max_image_pixels)
    x = imaging.preprocess_array(decoded.gray, params)[None]
    outputs = model.run(x)
    fields = {
        "age_years": float(outputs["age"][0, 0]),
        "sex": "male",
        "p_male": 0.7,
        "warnings": [],
        "age_interval_90": [40.0, 60.0],
    }

    def answer_json() -> None:  # the route's typed answer → JSON bytes, as FastAPI renders it
        from fastapi.encoders import jsonable_encoder
        from fastapi.responses import JSONResponse

        p = Prediction(
            **fields,
            model=ModelRef(name="m", version="1"),
            timings_ms={"preprocess": 9.0, "queue": 0.1, "inference": 1.0, "total": 11},
        )
        JSONResponse(jsonable_encoder(p, exclude_none=True))

    stages = {
        "http_parse": cpu_ms(lambda: http_parse(raw), n * 4),
        "body_read": cpu_ms(read_raw, n * 4),
        "multipart": cpu_ms(read_form, n * 4),
        "decode": cpu_ms(lambda: imaging.decode(png, max_pixels=settings.max_image_pixels), n),
        "resize": cpu_ms(lambda: imaging.preprocess_array(decoded.gray, params), n),
        "guard": cpu_ms(lambda: guard.measure(decoded.gray, decoded.colourfulness, params), n),
        "ort": cpu_ms(lambda: model.run(x), n * 4),
        "json": cpu_ms(answer_json, n * 4),
        "metrics": _metrics_cost(n * 20),
        "metrics_multiprocess": _metrics_cost_multiprocess(n * 20),
    }
    stages["multipart"] = max(0.0, stages["multipart"] - stages["body_read"])
    preprocess_ms = cpu_ms(lambda: _preprocess(png, params, settings.max_image_pixels), n)

    # The whole app in-process: ASGI call, no socket; decode and ORT in its own threads.
    app = create_app(settings)

    async def whole(count: int) -> float:
        async with app.router.lifespan_context(app) as state:

            async def call() -> None:
                sent: list[dict[str, Any]] = []

                async def send(message: dict[str, Any]) -> None:
                    sent.append(message)

                await app(_scope("/v1/predict", body, state), _receiver(body.content), send)
                assert sent and sent[0]["status"] == 200, sent[:1]

            await call()
            start = time.process_time()
            for _ in range(count):
                await call()
            return (time.process_time() - start) * 1000 / count

    app_ms = loop.run_until_complete(whole(n))
    loop.close()
    counted = (
        stages["body_read"]
        + stages["multipart"]
        + preprocess_ms
        + stages["ort"]
        + stages["json"]
        + stages["metrics"]
    )
    stages["framework"] = max(0.0, app_ms - counted)  # FastAPI, middleware, dependencies, hops
    return {
        "image_bytes": len(png),
        "requests_per_stage": n,
        "stages_cpu_ms": stages,
        "preprocess_in_service_ms": preprocess_ms,
        "asgi_app_in_process_ms": app_ms,
        "stage_sum_ms": sum(v for k, v in stages.items() if k != "metrics_multiprocess"),
        "note": "CPU ms per request, this process, single requests (c=1), ORT 1 thread",
    }


def main(argv: list[str] | None = None) -> int:
    """Profile one upload; print the stage table as JSON on stdout."""
    p = argparse.ArgumentParser(
        prog="python -m service.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model-dir", type=Path, default=Path("models"))
    p.add_argument("--png", type=Path, required=True, help="the image, as a raw upload")
    p.add_argument("--body", type=Path, required=True, help="the same image as a request body")
    p.add_argument("--content-type", required=True, help="the body's Content-Type")
    p.add_argument("-n", type=int, default=60, help="requests per stage")
    args = p.parse_args(argv)
    body = Body(args.body.read_bytes(), args.content_type)
    print(json.dumps(profile_stages(args.model_dir, args.png.read_bytes(), body, args.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
