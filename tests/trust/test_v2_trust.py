"""OIP v2 carries the trust fields as tensors: age_interval_90 [N, 2], input_guard_distance [N,
1]."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.support import samples

triton = pytest.importorskip("tritonclient.http")


def test_v2_metadata_lists_the_trust_outputs(demo_url, card) -> None:
    meta = httpx.get(f"{demo_url}/v2/models/{card['name']}").json()
    shapes = {o["name"]: o["shape"] for o in meta["outputs"]}
    assert shapes["age_interval_90"] == [-1, 2] and shapes["input_guard_distance"] == [-1, 1]


def test_v2_trust_tensors_agree_with_v1(demo_url, card, nih) -> None:
    chest = next((nih / "images").glob("*.png")).read_bytes()
    files = [chest, samples.text_page(0)]
    client = triton.InferenceServerClient(url=demo_url.removeprefix("http://"))
    item = triton.InferInput("image_bytes", [len(files)], "BYTES")
    item.set_data_from_numpy(np.array(files, dtype=np.object_))
    wanted = [
        triton.InferRequestedOutput(n) for n in ("age", "age_interval_90", "input_guard_distance")
    ]
    result = client.infer(card["name"], [item], outputs=wanted)
    interval = result.as_numpy("age_interval_90")
    distance = result.as_numpy("input_guard_distance")
    assert interval.shape == (2, 2) and distance.shape == (2, 1)
    v1 = httpx.post(f"{demo_url}/v1/predict", content=chest).json()
    assert interval[0].tolist() == pytest.approx(v1["age_interval_90"], abs=0.02)
    threshold = card["input_guard"]["threshold"]
    assert distance[0, 0] <= threshold < distance[1, 0]  # the chest passes, the text page does not
