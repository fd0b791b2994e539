"""The committed demo model (models/model.onnx + model.json) served end to end."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from cxr.imaging import preprocess_bytes
from service.model import load_model
from tests.support.images import encode, xray_array
from tests.support.paths import MODELS, NIH_IMAGES

pytestmark = pytest.mark.skipif(
    not (MODELS / "model.onnx").is_file() or not (MODELS / "model.json").is_file(),
    reason="models/model.onnx + model.json not committed yet (make demo-model builds them)",
)


@pytest.fixture(scope="module")
def demo():
    return load_model(MODELS / "model.onnx", MODELS / "model.json", intra_op_threads=1)


@pytest.fixture
def images() -> list[bytes]:
    if not NIH_IMAGES.is_dir():
        return [encode(xray_array(512, 512, seed=s)) for s in range(4)]
    return [p.read_bytes() for p in sorted(NIH_IMAGES.glob("*.png"))[:4]]


def test_card_and_model_agree(demo) -> None:
    assert demo.input_name == "image" and {"age", "p_male"} <= set(demo.output_names)
    assert demo.card.sha256 and demo.card.preprocessing.size == demo.params.size


def test_demo_model_served_equals_direct_ort(serve, settings_for, demo, images) -> None:
    srv = serve(settings_for(model_dir=MODELS))
    session = ort.InferenceSession(str(MODELS / "model.onnx"), providers=["CPUExecutionProvider"])
    for data in images:
        r = httpx.post(f"{srv.url}/v1/predict", files={"file": ("x.png", data)})
        assert r.status_code == 200, r.text
        x = preprocess_bytes(data, demo.card.params)[None]
        age, p_male = session.run(["age", "p_male"], {"image": x})
        body = r.json()
        assert body["age_years"] == pytest.approx(float(age[0, 0]), abs=1e-3)
        assert body["p_male"] == pytest.approx(float(p_male[0, 0]), abs=1e-5)
        assert 0 <= body["p_male"] <= 1 and -20 < body["age_years"] < 140
        assert body["model"] == {"name": demo.name, "version": demo.version}
    client = triton.InferenceServerClient(url=srv.url.removeprefix("http://"))
    item = triton.InferInput("image_bytes", [len(images)], "BYTES")
    item.set_data_from_numpy(np.array(images, dtype=np.object_))
    ages = client.infer(demo.name, [item]).as_numpy("age")
    assert ages.shape == (len(images), 1)


def test_demo_model_trust_fields(serve, settings_for, demo) -> None:
    if demo.card.input_guard is None or not NIH_IMAGES.is_dir():
        pytest.skip("card has no input_guard section, or the NIH sample is absent")
    srv = serve(settings_for(model_dir=MODELS))
    files = [("files", (p.name, p.read_bytes())) for p in sorted(NIH_IMAGES.glob("*.png"))[:40]]
    results = httpx.post(f"{srv.url}/v1/predict/batch", files=files, timeout=60).json()["results"]
    assert all(r["ok"] and len(r["age_interval_90"]) == 2 for r in results)
    flagged = sum(bool(r["warnings"]) for r in results)
    assert flagged <= 4, f"{flagged} of 40 training-distribution images flagged"
    # at the model's own size, so resizing does not average the noise away
    s = demo.params.size
    noise = np.random.default_rng(0).integers(0, 255, (s, s), dtype=np.uint8)
    body = httpx.post(f"{srv.url}/v1/predict", content=encode(noise)).json()
    # the image-level guard calls it noise too; the embedding guard must flag it on its own
    assert "unusual_input" in [w["code"] for w in body["warnings"]]
