"""What the load generator sends: phantom radiographs as PNG files, multipart bodies, OIP
tensors."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.phantom import generate_phantom, phantom_png

OIP_HEADER = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Body:
    """One ready-to-send HTTP request body with its content type (built once, sent many times)."""

    content: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def phantom_pngs(size: int, count: int, seed: int = 7) -> list[bytes]:
    """`count` distinct synthetic chest radiographs of size × size as 8-bit grey PNGs."""
    return [phantom_png(generate_phantom(seed * 1000 + i, size)) for i in range(count)]


def multipart_body(data: bytes, field: str = "file", filename: str = "image.png") -> Body:
    """A multipart/form-data upload of one file, encoded the way browsers and curl -F do."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    return Body(
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def raw_body(data: bytes) -> Body:
    """The file itself as the request body (the API's non-multipart form)."""
    return Body(data, "image/png")


def oip_tensor_body(x: npt.NDArray[np.float32], input_name: str = "image") -> Body:
    """An OIP v2 infer request carrying a pre-decoded FP32 tensor in the binary extension."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [
                {"name": "age", "parameters": {"binary_data": True}},
                {"name": "p_male", "parameters": {"binary_data": True}},
            ],
        }
    ).encode()
    return Body(head + x.tobytes(), "application/octet-stream", ((OIP_HEADER, str(len(head))),))
