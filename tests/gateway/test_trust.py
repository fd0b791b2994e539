"""Trust on the web page: warnings shown prominently, intervals, and 'show where the model
looked'."""

from __future__ import annotations

import io

import httpx

from tests.support.http import post_files
from tests.support.images import sample_png

EXPLANATION = {
    "age_years": 50.0,
    "sex": "male",
    "p_male": 0.7,
    "grid": 8,
    "patch_px": 8,
    "delta_age": [[0.0] * 8] * 8,
    "delta_p_male": [[0.0] * 8] * 8,
    "overlay_age_png": "iVBORw0KGgo=",
    "overlay_p_male_png": "iVBORw0KGgo=",
    "warnings": [],
    "batch_size": 65,
}


def ok_batch(warnings: list[dict]) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": {"name": "m", "version": "1"},
            "results": [
                {
                    "index": 0,
                    "filename": "a.png",
                    "ok": True,
                    "age_years": 54.4,
                    "sex": "male",
                    "p_male": 0.8,
                    "age_interval_90": [36.0, 72.9],
                    "warnings": warnings,
                }
            ],
        },
    )


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/preview":
        return httpx.Response(200, content=sample_png(), headers={"content-type": "image/png"})
    if request.url.path == "/v1/explain":
        return httpx.Response(200, json=EXPLANATION)
    return ok_batch(
        [{"code": "colour_image", "message": "this image is in colour (colourfulness 41)"}]
    )


def test_warning_banner_interval_and_explain_button(mock_app) -> None:
    app, _ = mock_app(handler)
    page = post_files(app.test_client(), [(sample_png(), "a.png")]).get_data(as_text=True)
    assert 'class="warning-banner" role="alert"' in page and "1 of 1 image" in page
    assert 'data-code="colour_image"' in page and "colourfulness 41" in page
    assert "90 % interval 36–73" in page
    assert 'class="button button-secondary explain-button"' in page
    assert 'data-url="/api/explain"' in page and "/static/explain.js" in page


def test_no_banner_without_warnings(mock_app) -> None:
    app, _ = mock_app(lambda r: ok_batch([]) if r.url.path.endswith("batch") else handler(r))
    page = post_files(app.test_client(), [(sample_png(), "a.png")]).get_data(as_text=True)
    assert "warning-banner" not in page


def test_api_explain_proxies_the_file(mock_app) -> None:
    app, seen = mock_app(handler)
    client = app.test_client()
    r = client.post(
        "/api/explain",
        data={"file": (io.BytesIO(b"PNGDATA"), "preview.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 200 and r.json["batch_size"] == 65
    sent = [s for s in seen if s.url.path == "/v1/explain"]
    assert len(sent) == 1 and b"PNGDATA" in sent[0].content and b'name="file"' in sent[0].content


def test_api_explain_without_a_file_is_400(mock_app) -> None:
    app, seen = mock_app(handler)
    r = app.test_client().post("/api/explain", data={}, content_type="multipart/form-data")
    assert r.status_code == 400 and "'file'" in r.json["detail"]
    assert not [s for s in seen if s.url.path == "/v1/explain"]


def test_api_explain_busy_passes_429_and_retry_after(mock_app) -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"Retry-After": "2"},
            json={
                "detail": "1 explanations already running (EXPLAIN_CONCURRENCY=1); retry later",
                "code": "overloaded",
            },
        )

    app, _ = mock_app(busy)
    r = app.test_client().post(
        "/api/explain",
        data={"file": (io.BytesIO(b"x"), "p.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert "try again in 2 seconds" in r.json["detail"]
