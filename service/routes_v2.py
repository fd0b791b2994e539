"""Open Inference Protocol v2 (KServe v2 REST), compatible with tritonclient.http."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from cxr.errors import ImageError
from service import oip, oip_verify
from service.deps import EngineDep, LifecycleDep, ReadyEngineDep
from service.engine import Engine
from service.errors import BadRequest, ModelNotFound
from service.model import ORT_TO_NUMPY
from service.oip_trust import trust_output_metadata, trust_outputs
from service.schemas import error_responses
from service.uploads import read_body

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])

BYTES_INPUT = "image_bytes"  # encoded image files, one per batch row
SERVER_NAME = "cxr-age-sex-service"
SERVER_VERSION = "0.1.0"


def _model(engine: Engine, name: str, version: str | None = None) -> None:
    if name != engine.model.name or (version not in (None, "", engine.model.version)):
        wanted = name if not version else f"{name} version {version}"
        raise ModelNotFound(
            f"model {wanted!r} is not served here; this server serves "
            f"{engine.model.name!r} version {engine.model.version!r}"
        )


@router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}


@router.get("/health/live", summary="Server liveness")
async def live() -> dict[str, bool]:
    """200 while the process runs."""
    return {"live": True}


@router.get(
    "/health/ready", summary="Server readiness", responses={503: {"description": "not ready"}}
)
async def ready(lifecycle: LifecycleDep) -> Response:
    """200 once warmed up; 503 before that and while draining."""
    ok = lifecycle is not None and lifecycle.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}", summary="Model metadata", responses=error_responses(404, 503))
@router.get("/models/{name}/versions/{version}", include_in_schema=False)
async def model_metadata(
    name: str, engine: EngineDep, version: str | None = None
) -> dict[str, Any]:
    """Inputs (the preprocessed tensor, or encoded image files as BYTES) and outputs."""
    _model(engine, name, version)
    m = engine.model
    outputs = [
        {
            "name": o.name,
            "datatype": oip.NUMPY_TO_OIP.get(ORT_TO_NUMPY.get(o.type, ""), "FP32"),
            "shape": [-1 if not isinstance(d, int) else d for d in o.shape],
        }
        for o in m.session.get_outputs()
    ]
    outputs += trust_output_metadata(engine.interval, engine.guard, m.output_names)
    inputs = [
        {"name": m.input_name, "datatype": "FP32", "shape": [-1, *m.input_shape]},
        {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]},
    ]
    if oip_verify.supported(m.card):  # optional recorded values → mismatch outputs
        inputs += oip_verify.input_metadata()
        outputs += oip_verify.output_metadata()
    return {
        "name": m.name,
        "versions": [m.version],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": outputs,
    }


@router.get(
    "/models/{name}/ready",
    summary="Model readiness",
    responses={**error_responses(404), 503: {"description": "model not ready"}},
)
@router.get("/models/{name}/versions/{version}/ready", include_in_schema=False)
async def model_ready(
    name: str, engine: EngineDep, lifecycle: LifecycleDep, version: str | None = None
) -> Response:
    """200 when this model can take requests."""
    _model(engine, name, version)
    ok = lifecycle is not None and lifecycle.ready
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


@router.post(
    "/models/{name}/infer",
    summary="Inference",
    responses={
        200: {"description": "OIP v2 inference response"},
        **error_responses(400, 404, 413, 415, 422, 429, 500, 503, 504),
    },
)
@router.post("/models/{name}/versions/{version}/infer", include_in_schema=False)
async def infer(
    name: str, request: Request, engine: ReadyEngineDep, version: str | None = None
) -> Response:
    """One input: `image` (FP32/UINT8 [N,S,S,1], grey 0–255) or `image_bytes` (BYTES [N] files)."""
    _model(engine, name, version)
    body = await read_body(request, engine.settings.max_batch_upload_bytes)
    req = oip.parse_request(body, request.headers.get(oip.HEADER_LENGTH))
    expected = {i.name: i for i in req.inputs if i.name in oip_verify.VERIFY_INPUTS}
    images = [i for i in req.inputs if i.name not in oip_verify.VERIFY_INPUTS]
    if len(images) != 1:
        raise BadRequest(
            f"send exactly one input ({engine.model.input_name!r} or {BYTES_INPUT!r}), "
            f"got {[i.name for i in req.inputs]}"
        )
    rows = len(images[0].items or []) or (images[0].shape or [0])[0]
    with engine.admit(max(1, rows)) as deadline:
        x = await _input_tensor(engine, images[0])
        outputs = await _run_chunked(engine, x, deadline)
    outputs = {**outputs, **trust_outputs(engine.interval, engine.guard, outputs)}
    if expected:  # the wrong-patient check (service/oip_verify.py)
        extra, seen = oip_verify.verify_outputs(engine.model.card, outputs, expected)
        outputs.update(extra)
        for decision, mode in seen:
            engine.metrics.verification(decision, mode)
    wanted = _select_outputs(req, list(outputs))
    selected = {n: outputs[n] for n in wanted}
    binary = {n for n in wanted if req.binary_output} | {
        o["name"] for o in req.outputs or [] if (o.get("parameters") or {}).get("binary_data")
    }
    if "age" in selected and "p_male" in selected:
        for row in range(len(x)):
            engine.observe(outputs, row)  # drift metrics, same as /v1
    content, head_len = oip.encode_response(
        engine.model.name, engine.model.version, req.id, selected, binary
    )
    if head_len is None:
        return Response(content, media_type="application/json")
    return Response(
        content, media_type="application/octet-stream", headers={oip.HEADER_LENGTH: str(head_len)}
    )


async def _input_tensor(engine: Engine, item: oip.InferInput) -> np.ndarray:
    model = engine.model
    expected = [-1, *model.input_shape]
    if item.name == BYTES_INPUT:
        if item.datatype != "BYTES" or item.items is None:
            raise BadRequest(f"input {BYTES_INPUT!r} must have datatype BYTES, got {item.datatype}")
        if not item.items:
            raise BadRequest(f"input {BYTES_INPUT!r} is empty; shape {item.shape}")
        results = await asyncio.gather(
            *(engine.preprocess(b) for b in item.items), return_exceptions=True
        )
        for i, res in enumerate(results):
            if isinstance(res, ImageError):
                raise type(res)(f"{BYTES_INPUT}[{i}]: {res.message}")
            if isinstance(res, BaseException):
                raise res
        return np.stack([res.x for res in results if not isinstance(res, BaseException)])
    if item.name != model.input_name:
        raise BadRequest(
            f"unknown input {item.name!r}; this model takes {model.input_name!r} "
            f"(FP32/UINT8 {expected}) or {BYTES_INPUT!r} (BYTES [-1])"
        )
    if item.datatype not in ("FP32", "UINT8") or item.array is None:
        raise BadRequest(
            f"input {item.name!r} datatype {item.datatype} is not supported; "
            f"send FP32 or UINT8 with shape {expected}"
        )
    shape = list(item.array.shape)
    if len(shape) != 4 or shape[1:] != expected[1:] or shape[0] < 1:
        raise BadRequest(
            f"input {item.name!r} has shape {shape}; expected {expected} "
            "(N ≥ 1, NHWC grey levels 0–255)"
        )
    x = item.array.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise BadRequest(f"input {item.name!r} contains NaN or infinite values")
    return x


async def _run_chunked(engine: Engine, x: np.ndarray, deadline: float) -> dict[str, np.ndarray]:
    """Large requests go through the batcher in max_batch_size chunks, like everybody else."""
    step = engine.settings.max_batch_size
    chunks = await asyncio.gather(
        *(
            engine.infer(np.ascontiguousarray(x[i : i + step]), deadline=deadline)
            for i in range(0, len(x), step)
        )
    )
    return {name: np.concatenate([c.outputs[name] for c in chunks]) for name in chunks[0].outputs}


def _select_outputs(req: oip.InferRequest, available: list[str]) -> list[str]:
    if not req.outputs:
        return available
    names = [o["name"] for o in req.outputs]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; this model has {available}")
    return names
