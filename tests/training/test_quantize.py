"""INT8 static quantisation on a small real conv model: QDQ nodes appear, outputs stay close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tests.support.models import build_conv_model
from training.quantize import predict, quantize

SIZE = 32


def test_quantize_writes_qdq_model_with_close_outputs(tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    build_conv_model(fp32, SIZE)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (48, SIZE, SIZE), dtype=np.uint8)
    quantize(fp32, int8, images[:32])
    ops = {n.op_type for n in onnx.load(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = images[32:, ..., None].astype(np.float32)
    a = predict(fp32, x)
    scale = float(np.max(np.abs(a["age"])))  # 8-bit steps: within 10 % of the output's size
    # Both kernel paths: fused INT8 kernels (which ones depends on the CPU: VNNI or not) and the
    # QDQ graph run node by node. U8U8 does not saturate on CPUs without VNNI (U8S8 did: 0.56).
    for fused in (True, False):
        b = predict(int8, x, fused=fused)
        assert a["age"].shape == b["age"].shape == (16, 1)
        assert 0 < float(np.max(np.abs(a["age"] - b["age"]))) < 0.1 * scale, fused
        assert float(np.max(np.abs(a["p_male"] - b["p_male"]))) < 0.05, fused
