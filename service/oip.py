"""Open Inference Protocol v2 wire format: JSON tensors and Triton's binary-tensor extension."""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import BadRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
NUMPY_TO_OIP = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "uint8": "UINT8",
    "int8": "INT8",
    "int32": "INT32",
    "int64": "INT64",
    "bool": "BOOL",
}
OIP_TO_NUMPY = {v: k for k, v in NUMPY_TO_OIP.items()}


@dataclass
class InferInput:
    """One decoded request input: either a numeric array or a list of byte strings."""

    name: str
    datatype: str
    shape: list[int]
    array: npt.NDArray[Any] | None = None
    items: list[bytes] | None = None


@dataclass
class InferRequest:
    id: str | None
    inputs: list[InferInput]
    outputs: list[dict[str, Any]] | None
    binary_output: bool


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where} 'parameters' must be an object, got {type(params).__name__}")
    return params


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """Split JSON header and binary section, decode every input; 400 naming what is wrong."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {header_length!r}; body has {len(body)} bytes")
        head, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    else:
        head, binary = body, memoryview(b"")
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"inference request is not valid JSON: {exc}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise BadRequest("inference request needs a non-empty 'inputs' list")
    offset = 0
    inputs = []
    for raw in req["inputs"]:
        item, used = _parse_input(raw, binary[offset:])
        offset += used
        inputs.append(item)
    if offset != len(binary):
        raise BadRequest(f"binary section has {len(binary)} bytes but inputs use {offset}")
    params = _params(req, "request")
    outputs = req.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise BadRequest("'outputs' must be a list of objects with a string 'name'")
    for o in outputs or []:
        _params(o, f"output {o['name']!r}")
    return InferRequest(
        id=req.get("id"),
        inputs=inputs,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
    )


def _parse_input(raw: Any, binary: memoryview) -> tuple[InferInput, int]:
    if not isinstance(raw, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise BadRequest("each input needs a string 'name' and 'datatype'")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r} shape {shape!r} is not a list of non-negative integers")
    size = math.prod(shape)  # exact: numpy's product would overflow on hostile shapes
    binary_size = _params(raw, f"input {name!r}").get("binary_data_size")
    item = InferInput(name, datatype, shape)
    if binary_size is not None and (
        not isinstance(binary_size, int) or binary_size < 0 or binary_size > len(binary)
    ):
        raise BadRequest(f"input {name!r} binary_data_size {binary_size!r} exceeds the body")
    if datatype == "BYTES":
        if binary_size is not None:
            item.items = _split_bytes(bytes(binary[:binary_size]), name)
        else:
            item.items = _base64_items(raw.get("data"), name)
        if len(item.items) != size:
            raise BadRequest(
                f"input {name!r} has {len(item.items)} elements; shape {shape} needs {size}"
            )
        return item, binary_size or 0
    dtype = OIP_TO_NUMPY.get(datatype)
    if dtype is None:
        raise BadRequest(f"input {name!r} datatype {datatype!r} is unknown")
    if binary_size is not None:
        expected = size * np.dtype(dtype).itemsize
        if binary_size != expected:
            raise BadRequest(
                f"input {name!r} has {binary_size} bytes; {datatype} shape {shape} needs {expected}"
            )
        item.array = np.frombuffer(binary[:binary_size], dtype=np.dtype(dtype).newbyteorder("<"))
        item.array = item.array.reshape(shape)
        return item, binary_size
    try:
        array = np.asarray(raw.get("data"), dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input {name!r} data is not {datatype}: {exc}") from None
    if array.size != size:
        raise BadRequest(f"input {name!r} has {array.size} values; shape {shape} needs {size}")
    item.array = array.reshape(shape)
    return item, 0


def _split_bytes(blob: bytes, name: str) -> list[bytes]:
    """Triton's BYTES serialisation: each element is a 4-byte little-endian length, then data."""
    items, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise BadRequest(f"input {name!r}: BYTES element header truncated at byte {pos}")
        (n,) = struct.unpack_from("<I", blob, pos)
        if pos + 4 + n > len(blob):
            raise BadRequest(f"input {name!r}: BYTES element of {n} bytes overruns the body")
        items.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return items


def _base64_items(data: Any, name: str) -> list[bytes]:
    """In JSON, encoded files travel as base64 strings (raw bytes are not valid JSON text)."""
    flat = np.asarray(data, dtype=object).reshape(-1).tolist() if data is not None else []
    out = []
    for i, value in enumerate(flat):
        if not isinstance(value, str):
            raise BadRequest(f"input {name!r} element {i} must be a base64 string")
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"input {name!r} element {i} is not valid base64") from None
    return out


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, npt.NDArray[Any]],
    binary: set[str],
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length."""
    tensors, blobs = [], []
    for name, value in outputs.items():
        arr = np.ascontiguousarray(value)
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": NUMPY_TO_OIP.get(str(arr.dtype), "FP32"),
            "shape": list(arr.shape),
        }
        if name in binary:
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = arr.reshape(-1).tolist()
        tensors.append(tensor)
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": tensors,
    }
    if request_id is not None:
        body["id"] = request_id
    head = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)
