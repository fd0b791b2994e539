"""Age intervals and input-guard warnings from the model card, through the real API."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from cxr.imaging import PreprocessParams, preprocess_bytes
from tests.support.http import scrape
from tests.support.images import encode, xray_array
from tests.support.models import SIZE, make_model_dir, write_card

QUANTILE_90 = 10.0


@pytest.fixture(scope="module")
def trust_model_dir(tmp_path_factory):
    """Tiny model with an `embedding` (mean grey / 255) and a card whose guard is centred on a
    typical synthetic X-ray: σ = 0.05, threshold 2σ, so a near-white or black image is flagged."""
    root = make_model_dir(tmp_path_factory.mktemp("trust"), embedding=True)
    reference = preprocess_bytes(encode(xray_array(seed=0)), PreprocessParams(size=SIZE))
    centre = float(reference.mean() / 255)
    write_card(
        root,
        outputs=[{"name": "age"}, {"name": "p_male"}, {"name": "embedding"}],
        age_interval={"quantiles": {"0.8": 7.0, "0.9": QUANTILE_90, "0.95": 14.0}},
        input_guard={
            "embedding_output": "embedding",
            "dim": 1,
            "mean": [centre],
            "inv_cov": [[400.0]],
            "threshold": 2.0,
        },
    )
    return root


def unusual_png() -> bytes:
    return encode(np.full((200, 200), 250, np.uint8))  # a blank white page


def test_interval_and_no_warning_for_a_typical_image(serve, settings_for, trust_model_dir) -> None:
    srv = serve(settings_for(model_dir=trust_model_dir))
    body = httpx.post(f"{srv.url}/v1/predict", content=encode(xray_array(seed=1))).json()
    age = body["age_years"]
    assert body["age_interval_90"] == pytest.approx(
        [age - QUANTILE_90, age + QUANTILE_90], abs=0.01
    )
    assert body["warnings"] == []


def test_unusual_image_is_flagged_not_refused(serve, settings_for, trust_model_dir) -> None:
    srv = serve(settings_for(model_dir=trust_model_dir))
    r = httpx.post(f"{srv.url}/v1/predict", content=unusual_png())
    assert r.status_code == 200
    warnings = {w["code"]: w["message"] for w in r.json()["warnings"]}
    assert set(warnings) == {"near_constant", "unusual_input"}
    assert "threshold 2.0" in warnings["unusual_input"]
    batch = httpx.post(
        f"{srv.url}/v1/predict/batch",
        files=[
            ("files", ("a.png", encode(xray_array(seed=2)))),
            ("files", ("b.png", unusual_png())),
        ],
    )
    assert [len(x["warnings"]) for x in batch.json()["results"]] == [0, 2]
    m = scrape(srv.url)
    assert m["cxr_input_warnings_total{code=unusual_input}"] == 2
    assert m["cxr_input_warnings_total{code=near_constant}"] == 2
    assert m["cxr_age_interval_width_years_count"] == 3


def test_strict_guard_refuses_with_422(serve, settings_for, trust_model_dir) -> None:
    srv = serve(settings_for(model_dir=trust_model_dir, strict_input_guard=True))
    r = httpx.post(f"{srv.url}/v1/predict", content=unusual_png())
    assert r.status_code == 422 and r.json()["code"] == "input_guard"
    assert "STRICT_INPUT_GUARD" in r.json()["detail"]
    assert (
        httpx.post(f"{srv.url}/v1/predict", content=encode(xray_array(seed=3))).status_code == 200
    )


def test_interval_clipped_and_absent_without_card_section(server, settings_for) -> None:
    from cxr.card import AgeInterval

    assert AgeInterval(quantiles={"0.9": 10.0}).around(115.0) == [105.0, 120.0]
    assert AgeInterval(quantiles={"0.9": 10.0}).around(3.0) == [0.0, 13.0]
    body = httpx.post(f"{server.url}/v1/predict", content=encode(xray_array())).json()
    assert "age_interval_90" not in body and body["warnings"] == []


def test_broken_guard_section_refuses_start(tmp_path) -> None:
    import asyncio

    from service.app import create_app
    from service.model import ModelMismatch
    from service.settings import Settings

    root = make_model_dir(tmp_path / "m", embedding=True)
    write_card(root, input_guard={"mean": [0.1, 0.2], "inv_cov": [[1.0]], "threshold": 1})
    app = create_app(Settings(model_dir=root))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(ModelMismatch, match="inv_cov"):
        asyncio.run(start())


def test_image_level_warnings_without_any_card_section(server) -> None:
    strip = np.tile(xray_array(100, 100), (1, 5))  # 500 × 100: a strip, not a chest film
    r = httpx.post(f"{server.url}/v1/predict", content=encode(strip))
    assert r.status_code == 200
    assert [w["code"] for w in r.json()["warnings"]] == ["extreme_aspect_ratio"]
    assert "500×100" in r.json()["warnings"][0]["message"]
    flat = httpx.post(f"{server.url}/v1/predict", content=encode(np.full((80, 80), 90, np.uint8)))
    assert [w["code"] for w in flat.json()["warnings"]] == ["near_constant"]
