"""CSRF, upload limits, security headers, escaping, in-memory uploads, nothing logged by name."""

from __future__ import annotations

import base64
import io
import logging
import re

import httpx
from flask import request
from werkzeug.test import EnvironBuilder

from tests.support.http import csrf_token, post_files
from tests.support.images import sample_png

XSS_NAME = "<script>alert(1)</script>.png"


def ok_batch(request: httpx.Request) -> httpx.Response:
    """A contract-shaped API answer: every file predicted, echoing nothing but indices."""
    if request.url.path == "/v1/preview":
        return httpx.Response(
            200, content=b"\x89PNG\r\n\x1a\n", headers={"Content-Type": "image/png"}
        )
    n = request.content.count(b'name="files"')
    return httpx.Response(
        200,
        json={
            "model": {"name": "m", "version": "1"},
            "results": [
                {"index": i, "ok": True, "age_years": 40.0 + i, "sex": "male", "p_male": 0.7}
                for i in range(n)
            ],
        },
    )


def test_form_post_without_csrf_token_is_refused_before_the_api(mock_app) -> None:
    app, seen = mock_app(ok_batch)
    client = app.test_client()
    csrf_token(client)  # the browser has the cookie, but the forged form lacks the field
    response = post_files(client, [(b"x", "a.png")], token=None)
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert not [r for r in seen if r.url.path.startswith("/v1/")]


def test_wrong_or_cookieless_csrf_token_is_refused(mock_app) -> None:
    app, seen = mock_app(ok_batch)
    client = app.test_client()
    token = csrf_token(client)
    assert post_files(client, [(b"x", "a.png")], token=token[::-1]).status_code == 400
    # A cross-site page can copy a token but the browser will not send the SameSite cookie.
    fresh = app.test_client()
    assert post_files(fresh, [(b"x", "a.png")], token=token).status_code == 400
    assert not [r for r in seen if r.url.path.startswith("/v1/")]
    assert post_files(client, [(sample_png(), "a.png")], token=token).status_code == 200


def test_csrf_cookie_is_httponly_samesite_strict(mock_app) -> None:
    app, _ = mock_app(ok_batch)
    cookie = app.test_client().get("/").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_security_headers_on_pages_errors_json_and_static(mock_app) -> None:
    app, _ = mock_app(ok_batch)
    client = app.test_client()
    for response in (
        client.get("/"),
        client.get("/nope"),
        client.get("/api/health"),
        client.get("/static/app.js"),
        post_files(client, [(b"x", "a.png")], token=None),
    ):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        response.close()
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_script_or_style(mock_app) -> None:
    app, _ = mock_app(ok_batch)
    client = app.test_client()
    pages = [
        client.get("/"),
        post_files(client, [(sample_png(), "a.png"), (sample_png(1), "b.png")]),
        post_files(client, [(sample_png(), "a.png")]),
        client.get("/nope"),
    ]
    for page in pages:
        html = page.get_data(as_text=True)
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.DOTALL)
        assert (' src="/static/app.js" defer', "") in scripts
        # Pages may add their own files (the results page loads explain.js), never inline code.
        assert all(
            re.fullmatch(r' src="/static/[a-z]+\.js" defer', a) and not body.strip()
            for a, body in scripts
        ), scripts
        assert not re.search(r"\sstyle=|\son[a-z]+=", html)


def test_hostile_file_name_renders_as_text(mock_app) -> None:
    app, _ = mock_app(ok_batch)
    client = app.test_client()
    body = post_files(client, [(sample_png(), XSS_NAME), (sample_png(1), "b.png")]).get_data(
        as_text=True
    )
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in body


def test_upload_over_limit_gives_413_page_and_json(mock_app) -> None:
    app, seen = mock_app(ok_batch, max_upload_bytes=10_000)
    client = app.test_client()
    response = post_files(client, [(b"\0" * 20_000, "big.png")])
    body = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "Upload too large" in body and "10 KB" in body
    assert 'id="upload-form"' in body
    api = client.post(
        "/api/predict",
        data={"file": (io.BytesIO(b"\0" * 20_000), "big.png")},
        content_type="multipart/form-data",
    )
    assert api.status_code == 413 and api.json["code"] == "upload_too_large"
    assert not [r for r in seen if r.url.path.startswith("/v1/")]


def test_a_flood_of_form_parts_is_refused_by_count(mock_app) -> None:
    app, seen = mock_app(ok_batch, max_files=2)
    response = post_files(app.test_client(), [(b"x", f"{i}.png") for i in range(100)])
    assert response.status_code == 413
    assert "too many files or form fields; the limit is 2 files" in response.get_data(as_text=True)
    assert not [r for r in seen if r.url.path.startswith("/v1/")]


def test_too_many_or_no_files_is_a_clear_400(mock_app) -> None:
    app, seen = mock_app(ok_batch, max_files=2)
    client = app.test_client()
    response = post_files(client, [(b"x", f"{i}.png") for i in range(3)])
    assert response.status_code == 400
    assert "3 files chosen; the limit is 2" in response.get_data(as_text=True)
    response = client.post(
        "/predict",
        data={"csrf_token": csrf_token(client), "files": (io.BytesIO(b""), "")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "no file chosen" in response.get_data(as_text=True)
    api = client.post("/api/predict", data={}, content_type="multipart/form-data")
    assert api.status_code == 400 and "field 'file'" in api.json["detail"]
    assert not [r for r in seen if r.url.path.startswith("/v1/")]


def test_uploads_stay_in_memory(mock_app) -> None:
    # Werkzeug would spool this 2 MB part to a temporary file; ours must stay a BytesIO.
    app, _ = mock_app(ok_batch)
    data = {"files": (io.BytesIO(b"\0" * 2_000_000), "big.png")}
    builder = EnvironBuilder(path="/predict", method="POST", data=data)
    environ = builder.get_environ()
    try:
        with app.request_context(environ):
            assert type(request.files["files"].stream) is io.BytesIO
    finally:
        environ["wsgi.input"].close()
        builder.close()


def test_file_names_are_never_logged(mock_app, caplog) -> None:
    name = "Patient-Jane-Doe-1957.png"
    app, _ = mock_app(
        lambda r: httpx.Response(
            200 if r.url.path != "/v1/predict/batch" else 429,
            json={"detail": "busy", "code": "overloaded"},
        )
    )
    with caplog.at_level(logging.DEBUG):
        post_files(app.test_client(), [(sample_png(), name)])
        app2, _ = mock_app(ok_batch)
        post_files(app2.test_client(), [(sample_png(), name), (b"%PDF", name)])
    assert caplog.records, "expected the app to log something"
    assert "Jane-Doe" not in caplog.text


def test_csv_download_escapes_formulas(mock_app) -> None:
    app, _ = mock_app(ok_batch)
    body = post_files(
        app.test_client(), [(sample_png(), "=HYPERLINK(1).png"), (sample_png(1), "b.png")]
    ).get_data(as_text=True)
    uri = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', body).group(1)
    rows = base64.b64decode(uri).decode().splitlines()
    assert rows[1].startswith("'=HYPERLINK(1).png,ok,40.0")
