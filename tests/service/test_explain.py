"""/v1/explain: occlusion sensitivity through the shared batcher, on a model whose cues we know."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from cxr.imaging import PreprocessParams, preprocess_bytes
from service import explain
from tests.support.images import encode, xray_array
from tests.support.models import SIZE, age_sex_outputs, save_model, write_card

HALF = SIZE // 2


def build_regional_model(path) -> None:
    """age reads only the top-left quadrant, p_male only the bottom-right one."""
    f = TensorProto.FLOAT

    def region(name: str, starts: list[int]) -> list:
        return [
            helper.make_node(
                "Slice", ["image", f"{name}_start", f"{name}_end", "slice_axes"], [f"{name}_q"]
            ),
            helper.make_node("ReduceMean", [f"{name}_q", "mean_axes"], [f"{name}_m"], keepdims=0),
        ], [
            helper.make_tensor(f"{name}_start", TensorProto.INT64, [2], starts),
            helper.make_tensor(f"{name}_end", TensorProto.INT64, [2], [s + HALF for s in starts]),
        ]

    age_nodes, age_inits = region("age", [0, 0])
    sex_nodes, sex_inits = region("sex", [HALF, HALF])
    nodes = [
        *age_nodes,
        *sex_nodes,
        helper.make_node("Mul", ["age_m", "a"], ["age_s"]),
        helper.make_node("Add", ["age_s", "b"], ["age_flat"]),
        helper.make_node("Unsqueeze", ["age_flat", "one"], ["age"]),
        helper.make_node("Sub", ["sex_m", "c"], ["sex_c"]),
        helper.make_node("Div", ["sex_c", "d"], ["sex_l"]),
        helper.make_node("Sigmoid", ["sex_l"], ["sex_p"]),
        helper.make_node("Unsqueeze", ["sex_p", "one"], ["p_male"]),
    ]
    inits = [
        *age_inits,
        *sex_inits,
        helper.make_tensor("slice_axes", TensorProto.INT64, [2], [1, 2]),
        helper.make_tensor("mean_axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("a", f, [], [0.3]),
        helper.make_tensor("b", f, [], [10.0]),
        helper.make_tensor("c", f, [], [100.0]),
        helper.make_tensor("d", f, [], [20.0]),
    ]
    save_model(nodes, inits, age_sex_outputs(), path, name="regional")


@pytest.fixture(scope="module")
def regional_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("regional")
    build_regional_model(root / "model.onnx")
    write_card(root)
    return root


def textured(seed: int = 0) -> bytes:
    """Structure everywhere, so greying out any patch changes its region's mean."""
    rng = np.random.default_rng(seed)
    img = xray_array(256, 256, seed=seed).astype(np.int16) + rng.integers(-40, 40, (256, 256))
    return encode(np.clip(img, 30, 255).astype(np.uint8))


def test_hot_patches_are_where_the_model_looks(serve, settings_for, regional_dir) -> None:
    srv = serve(settings_for(model_dir=regional_dir))
    data = textured()
    r = httpx.post(f"{srv.url}/v1/explain", files={"file": ("x.png", data)}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    grid = body["grid"]
    assert grid == 8 and body["patch_px"] == SIZE // grid
    age, sex = np.array(body["delta_age"]), np.array(body["delta_p_male"])
    q = grid // 2
    assert np.abs(age[:q, :q]).sum() > 0 and np.abs(age).sum() == np.abs(age[:q, :q]).sum()
    assert np.abs(sex[q:, q:]).sum() > 0 and np.abs(sex).sum() == np.abs(sex[q:, q:]).sum()

    # the same numbers straight from ONNX Runtime on the same preprocessed image
    x = preprocess_bytes(data, PreprocessParams(size=SIZE))
    session = ort.InferenceSession(
        str(regional_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    direct_age, _ = session.run(["age", "p_male"], {"image": explain.occlusion_batch(x, grid)})
    assert age == pytest.approx(explain.sensitivity(direct_age, grid), abs=1e-3)
    assert body["age_years"] == pytest.approx(float(direct_age[0, 0]), abs=1e-4)

    for key in ("overlay_age_png", "overlay_p_male_png"):
        img = Image.open(io.BytesIO(base64.b64decode(body[key])))
        assert img.format == "PNG" and img.size == (256, 256) and img.mode == "RGB"


def test_explanations_have_their_own_concurrency_limit(serve, settings_for, regional_dir) -> None:
    # a long max_wait keeps the first explanation in the queue while the second arrives
    srv = serve(
        settings_for(
            model_dir=regional_dir,
            max_batch_size=128,
            max_wait_ms=1500,
            flush_when_idle=False,
            explain_concurrency=1,
        )
    )

    async def main():
        async with httpx.AsyncClient(timeout=30) as client:
            first = asyncio.create_task(client.post(f"{srv.url}/v1/explain", content=textured(1)))
            await asyncio.sleep(0.5)
            second = await client.post(f"{srv.url}/v1/explain", content=textured(2))
            predict = await client.post(f"{srv.url}/v1/predict", content=textured(3))
            return await first, second, predict

    first, second, predict = asyncio.run(main())
    assert first.status_code == 200
    assert second.status_code == 429 and "EXPLAIN_CONCURRENCY" in second.json()["detail"]
    assert "Retry-After" in second.headers
    assert predict.status_code == 200  # predictions are not blocked by the explanation limit


def test_explain_bad_input_is_4xx(server) -> None:
    r = httpx.post(f"{server.url}/v1/explain", content=b"%PDF-1.5")
    assert r.status_code == 415 and "pdf" in r.json()["detail"]
