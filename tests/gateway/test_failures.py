"""The API down, overloaded, not ready, slow or failing: a clear page or JSON, never a crash."""

from __future__ import annotations

import httpx

from gateway_flask import create_app
from gateway_flask.settings import Settings
from tests.support.http import post_files
from tests.support.images import sample_png
from tests.support.procs import free_port


def test_api_down_gives_retry_page_json_and_health(tmp_path) -> None:
    # A real closed port: the connection is refused by the OS, nothing is mocked.
    app = create_app(Settings(api_url=f"http://127.0.0.1:{free_port()}", secret_key="x" * 32))
    client = app.test_client()

    page = client.get("/")
    assert page.status_code == 200
    assert "API unreachable" in page.get_data(as_text=True)

    response = post_files(client, [(sample_png(), "chest.png")])
    body = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "cannot reach the inference service" in body
    assert response.headers["Retry-After"] == "10"
    assert 'id="upload-form"' in body  # the person can retry from the same page
    assert "Traceback" not in body

    api = client.post(
        "/api/predict",
        data={"file": (__import__("io").BytesIO(b"x"), "a.png")},
        content_type="multipart/form-data",
    )
    assert api.status_code == 503
    assert api.json["code"] == "api_unavailable"
    assert client.get("/api/health").json == {"api": "down"}

    model = client.get("/model")
    assert model.status_code == 503
    assert "cannot reach the inference service" in model.get_data(as_text=True)


def test_api_429_passes_retry_after_to_page_and_json(mock_app) -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"Retry-After": "3"},
            json={"detail": "queue full (256 waiting)", "code": "overloaded"},
        )

    app, seen = mock_app(busy)
    client = app.test_client()
    response = post_files(client, [(sample_png(), "chest.png")])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert "try again in 3 seconds" in response.get_data(as_text=True)
    assert [r.url.path for r in seen if r.url.path != "/readyz"] == ["/v1/predict/batch"]

    api = client.post(
        "/api/predict",
        data={"file": (__import__("io").BytesIO(b"x"), "a.png")},
        content_type="multipart/form-data",
    )
    assert api.status_code == 429
    assert api.headers["Retry-After"] == "3"
    assert api.json == {
        "detail": "Too many images are being analysed right now. Please try again in 3 seconds.",
        "code": "overloaded",
    }


def test_api_not_ready_503(mock_app) -> None:
    app, _ = mock_app(
        lambda r: httpx.Response(503, json={"detail": "model loading", "code": "not_ready"})
    )
    response = post_files(app.test_client(), [(sample_png(), "chest.png")])
    assert response.status_code == 503
    assert "starting or restarting" in response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"


def test_api_timeout_is_unavailable(mock_app) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    app, _ = mock_app(slow)
    response = post_files(app.test_client(), [(sample_png(), "chest.png")])
    assert response.status_code == 503
    assert "Please try again" in response.get_data(as_text=True)


def test_api_500_becomes_502_with_its_message(mock_app) -> None:
    app, _ = mock_app(
        lambda r: httpx.Response(
            500, json={"detail": "ORT failed on batch of 3", "code": "inference_failed"}
        )
    )
    client = app.test_client()
    response = post_files(client, [(sample_png(), "chest.png")])
    assert response.status_code == 502
    assert "ORT failed on batch of 3" in response.get_data(as_text=True)


def test_api_error_without_json_body(mock_app) -> None:
    app, _ = mock_app(lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    response = post_files(app.test_client(), [(sample_png(), "chest.png")])
    assert response.status_code == 502
    assert "answered 502" in response.get_data(as_text=True)


def test_preview_failure_still_shows_prediction(mock_app) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/preview":
            return httpx.Response(
                415, json={"detail": "no preview", "code": "unsupported_media_type"}
            )
        return httpx.Response(
            200,
            json={
                "model": {"name": "m", "version": "1"},
                "results": [
                    {"index": 0, "ok": True, "age_years": 61.6, "sex": "female", "p_male": 0.12}
                ],
            },
        )

    app, _ = mock_app(handler)
    response = post_files(app.test_client(), [(sample_png(), "chest.png")])
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "62 years" in body and "Female" in body
    assert "thumb-none" in body


def test_api_key_is_sent_as_bearer_when_configured(mock_app) -> None:
    def needs_key(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer s3cret-key":
            return httpx.Response(401, json={"detail": "unauthorized", "code": "unauthorized"})
        return httpx.Response(200, json={"name": "m", "version": "1"})

    app, _ = mock_app(needs_key, api_key="s3cret-key")
    assert app.test_client().get("/model").status_code == 200
    app, _ = mock_app(needs_key)
    response = app.test_client().get("/model")
    # The person did nothing wrong: the web app's own credentials are missing or wrong.
    assert response.status_code == 502
    assert "GATEWAY_API_KEY" in response.get_data(as_text=True)
