"""The BentoML peer of issue 13: the same `model.onnx`, the same decoding and preprocessing
(`cxr/imaging.py`) and the same ORT session options as the service, behind BentoML 1.4 with its
adaptive batching (a batchable API: concurrent requests are merged into one call of up to 16
images, the batch window adapted to the traffic). One worker process per CPU, like the service's
WORKERS default.

Not imported by anything of ours: `benchmarks/peer.py` runs it with the interpreter of its own
virtualenv (`make peer-venv`; BentoML and its dependencies stay out of the project's locks):

    .venv-peer/bin/python -m bentoml serve benchmarks.peer_bentoml:CxrPeer --port 3000

The request is the service's: multipart/form-data with the image in field `file`. The answer is
the two numbers (BentoML's JSON list of one). Bad images fail their batch — a peer for speed,
not for robustness.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxr import imaging
from cxr.card import load_card

MODEL_DIR = Path(os.environ.get("MODEL_DIR", str(ROOT / "models")))
WORKERS = int(os.environ.get("PEER_WORKERS", "0")) or len(os.sched_getaffinity(0))
MAX_BATCH = int(os.environ.get("PEER_MAX_BATCH_SIZE", "16"))
MAX_LATENCY_MS = int(os.environ.get("PEER_MAX_LATENCY_MS", "1000"))


# access logs off, as in the service (one log line per request costs both the same)
@bentoml.service(
    workers=WORKERS,
    traffic={"timeout": 60, "concurrency": 256},
    logging={"access": {"enabled": False}},
)
class CxrPeer:
    """Decode + preprocess + ORT for a batch of uploaded files."""

    def __init__(self) -> None:
        import onnxruntime as ort

        from cxr.runtime import keep_image_buffers, session_options

        keep_image_buffers()  # as the service and the in-process ceiling do
        self.params = load_card(MODEL_DIR / "model.json").params
        self.session = ort.InferenceSession(
            str(MODEL_DIR / "model.onnx"),
            sess_options=session_options(1),  # one thread per worker: workers × 1 = cores
            providers=["CPUExecutionProvider"],
        )
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, file: list[Path]) -> list[dict[str, Any]]:
        x = np.stack([imaging.preprocess_bytes(p.read_bytes(), self.params) for p in file])
        out = dict(zip(self.outputs, self.session.run(self.outputs, {self.input: x}), strict=True))
        return [
            {
                "age_years": float(out["age"][i].reshape(-1)[0]),
                "p_male": float(out["p_male"][i].reshape(-1)[0]),
            }
            for i in range(len(file))
        ]
