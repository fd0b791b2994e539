"""INT8 static quantisation on a small real conv model: QDQ nodes appear, outputs stay close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.quantize import predict, quantize

SIZE = 32


def write_conv_model(path: Path) -> None:
    """NHWC grey image → conv 3×3 ×8 → ReLU → global pool → age (linear) and p_male (sigmoid)."""
    rng = np.random.default_rng(0)
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(rng.normal(0, 0.05, (8, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 1, (8, 2)).astype(np.float32), "head"),
             numpy_helper.from_array(np.array([-1, 8], np.int64), "flat"),
             numpy_helper.from_array(np.array([0], np.int64), "s0"),
             numpy_helper.from_array(np.array([1], np.int64), "s1"),
             numpy_helper.from_array(np.array([2], np.int64), "s2"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["act"]),
             helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
             helper.make_node("Reshape", ["pool", "flat"], ["feat"]),
             helper.make_node("MatMul", ["feat", "head"], ["both"]),
             helper.make_node("Slice", ["both", "s0", "s1", "ax"], ["age"]),
             helper.make_node("Slice", ["both", "s1", "s2", "ax"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["p_male"])]
    graph = helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("image", f, ["batch", SIZE, SIZE, 1])],
        [helper.make_tensor_value_info("age", f, ["batch", 1]),
         helper.make_tensor_value_info("p_male", f, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_quantize_writes_qdq_model_with_close_outputs(tmp_path: Path) -> None:
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    write_conv_model(fp32)
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
