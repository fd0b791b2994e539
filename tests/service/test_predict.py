"""/v1 endpoints against a real uvicorn server and a real ONNX Runtime session."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.images import encode, xray_array
from tests.support.models import SIZE, direct_ort


def test_predict_multipart_equals_direct_ort(server, model_dir, xray_png) -> None:
    data = xray_png(seed=1)
    r = httpx.post(f"{server.url}/v1/predict", files={"file": ("scan.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    age, p_male = direct_ort(model_dir, data)
    assert body["age_years"] == pytest.approx(age, abs=1e-4)
    assert body["p_male"] == pytest.approx(p_male, abs=1e-6)
    assert body["sex"] == ("male" if p_male >= 0.5 else "female")
    assert body["model"] == {"name": "cxr-age-sex", "version": "0.0.1-test"}
    assert set(body["timings_ms"]) == {"preprocess", "queue", "inference", "total"}
    assert body["warnings"] == []


def test_predict_raw_body_same_answer(server, xray_png) -> None:
    data = xray_png(seed=2, brightness=1.4)
    multipart = httpx.post(f"{server.url}/v1/predict", files={"file": ("a.png", data)}).json()
    raw = httpx.post(
        f"{server.url}/v1/predict", content=data, headers={"Content-Type": "image/png"}
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["age_years"] == multipart["age_years"]
    assert raw.json()["p_male"] == multipart["p_male"]


@pytest.mark.parametrize(
    "fmt,mode,save",
    [
        ("JPEG", "CMYK", {}),
        ("TIFF", None, {}),
        ("BMP", None, {}),
        ("WEBP", None, {"lossless": True}),
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
    ],
)
def test_other_formats_accepted(server, model_dir, fmt, mode, save) -> None:
    data = encode(xray_array(seed=3), fmt, mode, **save)
    r = httpx.post(f"{server.url}/v1/predict", content=data)
    assert r.status_code == 200, r.text
    assert r.json()["age_years"] == pytest.approx(direct_ort(model_dir, data)[0], abs=1e-4)


def test_sixteen_bit_png_accepted(server) -> None:
    wide = xray_array(seed=4).astype(np.uint16) * 200
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    assert httpx.post(f"{server.url}/v1/predict", content=buf.getvalue()).status_code == 200


def test_batch_keeps_order_and_reports_item_errors(server, model_dir, xray_png) -> None:
    good_a, good_b = xray_png(seed=5), xray_png(seed=6, brightness=0.5)
    files = [
        ("files", ("a.png", good_a, "image/png")),
        ("files", ("b.pdf", b"%PDF-1.7\n...", "application/pdf")),
        ("files", ("c.png", good_b, "image/png")),
        ("files", ("d.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image/png")),
    ]
    r = httpx.post(f"{server.url}/v1/predict/batch", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["name"] == "cxr-age-sex"
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2, 3]
    assert [x["filename"] for x in results] == ["a.png", "b.pdf", "c.png", "d.png"]
    assert [x["ok"] for x in results] == [True, False, True, False]
    assert results[0]["age_years"] == pytest.approx(direct_ort(model_dir, good_a)[0], abs=1e-4)
    assert results[2]["age_years"] == pytest.approx(direct_ort(model_dir, good_b)[0], abs=1e-4)
    assert results[1]["error"]["status"] == 415 and "pdf" in results[1]["error"]["message"]
    assert results[3]["error"]["status"] == 422


def test_batch_file_count_limit(serve, settings_for, xray_png) -> None:
    srv = serve(settings_for(max_batch_files=2))
    files = [("files", (f"{i}.png", xray_png(seed=i))) for i in range(3)]
    r = httpx.post(f"{srv.url}/v1/predict/batch", files=files)
    assert r.status_code == 413
    assert r.json()["code"] == "too_many_files" and "2" in r.json()["detail"]


def test_preview_is_cleaned_png(server) -> None:
    padded = np.zeros((600, 900), dtype=np.uint8)
    padded[:, 150:750] = xray_array(600, 600, seed=7)  # black side padding is cropped away
    r = httpx.post(f"{server.url}/v1/preview", files={"file": ("p.png", encode(padded))})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.mode == "L" and max(img.size) <= 256
    assert img.size[0] < img.size[1] * 1.2  # padding gone: no longer 3:2 wide


def test_model_card_and_health(server) -> None:
    card = httpx.get(f"{server.url}/v1/models").json()
    assert card["name"] == "cxr-age-sex" and card["input"]["shape"] == [None, SIZE, SIZE, 1]
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["model"]["name"] == "cxr-age-sex"


def test_openapi_docs_have_examples(server) -> None:
    assert httpx.get(f"{server.url}/docs").status_code == 200
    spec = httpx.get(f"{server.url}/openapi.json").json()
    predict = spec["paths"]["/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert spec["components"]["schemas"]["Prediction"]["examples"][0]["sex"] == "male"


def test_batch_items_carry_only_their_fields(server, xray_png) -> None:
    files = [("files", ("a.png", xray_png())), ("files", ("b.txt", b"plain text"))]
    ok, bad = httpx.post(f"{server.url}/v1/predict/batch", files=files).json()["results"]
    assert "error" not in ok and {"age_years", "sex", "p_male", "timings_ms"} <= set(ok)
    assert "age_years" not in bad and bad["error"]["code"] == "unsupported_media_type"
