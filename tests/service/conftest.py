"""Fixtures for the API tests: a tiny real ONNX model + card, images, a real uvicorn server."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import uvicorn
from onnx import TensorProto, helper
from PIL import Image

from cxr.card import Preprocessing
from scripts.make_hostile_corpus import xray
from service.app import create_app
from service.lifecycle import Lifecycle
from service.settings import Settings

SIZE = 64


def build_tiny_model(path: Path, *, faulty: bool = False, embedding: bool = False) -> None:
    """age = 0.3·mean + 10, p_male = sigmoid((mean − 100)/20); `faulty` makes ORT raise on bright
    inputs (a Gather index goes out of range when the max pixel exceeds 250)."""
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
        helper.make_tensor("a", f, [], [0.3]), helper.make_tensor("b", f, [], [10.0]),
        helper.make_tensor("c", f, [], [100.0]), helper.make_tensor("d", f, [], [20.0]),
    ]
    if faulty:
        nodes += [
            helper.make_node("ReduceMax", ["flat", "axes"], ["peak"], keepdims=1),
            helper.make_node("Greater", ["peak", "limit"], ["bright"]),
            helper.make_node("Cast", ["bright"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["zero", "index"], ["offset"], axis=0),
            helper.make_node("Add", ["age_raw", "offset"], ["age"]),
        ]
        inits += [helper.make_tensor("limit", f, [], [250.0]), helper.make_tensor("zero", f, [1], [0.0])]
    else:
        nodes.append(helper.make_node("Identity", ["age_raw"], ["age"]))
    outputs = [helper.make_tensor_value_info("age", f, ["batch", 1]),
               helper.make_tensor_value_info("p_male", f, ["batch", 1])]
    if embedding:  # the input guard's features: mean grey level / 255, one dimension
        nodes.append(helper.make_node("Div", ["mean", "full"], ["embedding"]))
        inits.append(helper.make_tensor("full", f, [], [255.0]))
        outputs.append(helper.make_tensor_value_info("embedding", f, ["batch", 1]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", f, ["batch", SIZE, SIZE, 1])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_card(model_dir: Path, **overrides: object) -> dict:
    """A model.json matching model.onnx in `model_dir` (overrides replace top-level keys)."""
    digest = hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest()
    card = {
        "name": "cxr-age-sex", "version": "0.0.1-test", "created": "2026-11-25T21:00:00Z",
        "input": {"name": "image", "shape": [None, SIZE, SIZE, 1], "dtype": "float32",
                  "layout": "NHWC", "value_range": [0, 255]},
        "preprocessing": Preprocessing(size=SIZE).model_dump(),
        "outputs": [{"name": "age", "shape": [None, 1], "dtype": "float32", "unit": "years"},
                    {"name": "p_male", "shape": [None, 1], "dtype": "float32"}],
        "sha256": digest, "disclaimer": "Test model.",
    }
    card.update(overrides)
    (model_dir / "model.json").write_text(json.dumps(card))
    return card


def make_model_dir(root: Path, *, faulty: bool = False, embedding: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    build_tiny_model(root / "model.onnx", faulty=faulty, embedding=embedding)
    write_card(root)
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def faulty_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("faulty"), faulty=True)


def xray_array(width: int = 200, height: int = 240, seed: int = 0, brightness: float = 1.0) -> np.ndarray:
    """A chest-X-ray-like grey image (the hostile corpus's drawing, at this suite's default size)."""
    return xray(width, height, seed, brightness)


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **save: object) -> bytes:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.fixture
def xray_png() -> Callable[..., bytes]:
    """Factory: PNG bytes of a synthetic X-ray (kwargs go to xray_array)."""
    return lambda **kw: encode(xray_array(**kw))


@pytest.fixture
def settings_for(model_dir: Path) -> Callable[..., Settings]:
    """Factory: test Settings on the tiny model, overridable per test."""
    def make(**overrides: object) -> Settings:
        base = {"model_dir": model_dir, "host": "127.0.0.1", "port": 0, "preprocess_threads": 2,
                "ort_intra_op_threads": 1, "drain_timeout_s": 5}
        return Settings(**{**base, **overrides})
    return make


class RunningServer:
    """A real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.lifecycle = Lifecycle()
        self.app = create_app(settings, lifecycle=self.lifecycle)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Settings], RunningServer]]:
    """Factory: start a server with the given Settings; all are stopped after the test."""
    servers: list[RunningServer] = []

    def start(settings: Settings) -> RunningServer:
        server = RunningServer(settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


@pytest.fixture
def server(serve: Callable[[Settings], RunningServer], settings_for: Callable[..., Settings]) -> RunningServer:
    """A default server on the tiny model."""
    return serve(settings_for())
