"""Tiny real ONNX models ORT can run in milliseconds, with model cards that match them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from cxr.card import Preprocessing, file_sha256
from cxr.imaging import PreprocessParams, preprocess_bytes

SIZE = 64  # the tiny models' input side: image (batch, SIZE, SIZE, 1), NHWC float32 0–255


def save_model(
    nodes: list,
    inits: list,
    outputs: list,
    path: Path,
    *,
    name: str = "tiny",
    size: int = SIZE,
    opset: int = 18,
) -> None:
    """Check and save a graph on the API's input `image` (batch, size, size, 1)."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, 1])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def age_sex_outputs() -> list:
    """The two outputs every model card names: age and p_male, (batch, 1) float32."""
    f = TensorProto.FLOAT
    return [
        helper.make_tensor_value_info("age", f, ["batch", 1]),
        helper.make_tensor_value_info("p_male", f, ["batch", 1]),
    ]


def build_tiny_model(path: Path, *, faulty: bool = False, embedding: bool = False) -> None:
    """age = 0.3·mean + 10, p_male = sigmoid((mean − 100)/20); `faulty` makes ORT raise on bright
    inputs (a Gather index goes out of range when the max pixel exceeds 250); `embedding` adds the
    input guard's features (mean grey level / 255, one dimension)."""
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat", "axes"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "a"], ["scaled"]),
        helper.make_node("Add", ["scaled", "b"], ["age_raw"]),
        helper.make_node("Sub", ["mean", "c"], ["centred"]),
        helper.make_node("Div", ["centred", "d"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p_male"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("a", f, [], [0.3]),
        helper.make_tensor("b", f, [], [10.0]),
        helper.make_tensor("c", f, [], [100.0]),
        helper.make_tensor("d", f, [], [20.0]),
    ]
    if faulty:
        nodes += [
            helper.make_node("ReduceMax", ["flat", "axes"], ["peak"], keepdims=1),
            helper.make_node("Greater", ["peak", "limit"], ["bright"]),
            helper.make_node("Cast", ["bright"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["zero", "index"], ["offset"], axis=0),
            helper.make_node("Add", ["age_raw", "offset"], ["age"]),
        ]
        inits += [
            helper.make_tensor("limit", f, [], [250.0]),
            helper.make_tensor("zero", f, [1], [0.0]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["age_raw"], ["age"]))
    outputs = age_sex_outputs()
    if embedding:
        nodes.append(helper.make_node("Div", ["mean", "full"], ["embedding"]))
        inits.append(helper.make_tensor("full", f, [], [255.0]))
        outputs.append(helper.make_tensor_value_info("embedding", f, ["batch", 1]))
    save_model(nodes, inits, outputs, path)


def build_conv_model(path: Path, size: int = 32) -> None:
    """NHWC grey image → conv 3×3 ×8 → ReLU → global pool → age (linear) and p_male (sigmoid):
    small, but with the ops INT8 quantisation rewrites."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.05, (8, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 1, (8, 2)).astype(np.float32), "head"),
        numpy_helper.from_array(np.array([-1, 8], np.int64), "flat"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1], np.int64), "s1"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
    ]
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
        helper.make_node("Reshape", ["pool", "flat"], ["feat"]),
        helper.make_node("MatMul", ["feat", "head"], ["both"]),
        helper.make_node("Slice", ["both", "s0", "s1", "ax"], ["age"]),
        helper.make_node("Slice", ["both", "s1", "s2", "ax"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p_male"]),
    ]
    save_model(nodes, inits, age_sex_outputs(), path, name="conv", size=size, opset=17)


def write_card(model_dir: Path, *, size: int = SIZE, **overrides: object) -> dict:
    """A model.json matching model.onnx in `model_dir`; `overrides` replace top-level keys.

    Written as plain JSON, not through `cxr.card.write_card`, because tests write broken cards
    on purpose (the service must refuse them at start-up)."""
    card = {
        "name": "cxr-age-sex",
        "version": "0.0.1-test",
        "created": "2026-11-25T21:00:00Z",
        "input": {
            "name": "image",
            "shape": [None, size, size, 1],
            "dtype": "float32",
            "layout": "NHWC",
            "value_range": [0, 255],
        },
        "preprocessing": Preprocessing(size=size).model_dump(),
        "outputs": [
            {"name": "age", "shape": [None, 1], "dtype": "float32", "unit": "years"},
            {"name": "p_male", "shape": [None, 1], "dtype": "float32"},
        ],
        "sha256": file_sha256(model_dir / "model.onnx"),
        "disclaimer": "Test model.",
    }
    card.update(overrides)
    (model_dir / "model.json").write_text(json.dumps(card))
    return card


def make_model_dir(root: Path, *, faulty: bool = False, embedding: bool = False) -> Path:
    """`root` with the tiny model and its card: a MODEL_DIR the service starts on."""
    root.mkdir(parents=True, exist_ok=True)
    build_tiny_model(root / "model.onnx", faulty=faulty, embedding=embedding)
    write_card(root)
    return root


def direct_ort(model_dir: Path, data: bytes, size: int = SIZE) -> tuple[float, float]:
    """(age, p_male) for a file through the shared preprocessing and a fresh ORT session, no HTTP:
    what the API must answer for it."""
    x = preprocess_bytes(data, PreprocessParams(size=size))[None]
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    age, p_male = session.run(["age", "p_male"], {"image": x})
    return float(age[0, 0]), float(p_male[0, 0])
