"""The web app served by gunicorn (`python -m gateway_flask`) over real HTTP."""

from __future__ import annotations

import re

import httpx

from tests.support.images import sample_png


def test_live_upload_with_cookie_and_token(live_gateway) -> None:
    url, _ = live_gateway
    with httpx.Client(base_url=url, timeout=30) as browser:
        page = browser.get("/")
        assert page.status_code == 200 and "API ready" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        result = browser.post(
            "/predict",
            data={"csrf_token": token},
            files=[("files", ("a.png", sample_png(), "image/png"))],
        )
        assert result.status_code == 200, result.text
        assert re.search(r"\d+ years", result.text)


def test_live_oversized_upload_gets_the_413_page_not_a_reset(live_gateway) -> None:
    url, log = live_gateway
    with httpx.Client(base_url=url, timeout=30) as browser:
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text).group(1)
        big = b"\0" * (8 * 1024 * 1024)  # the live server's limit is 4 MB
        response = browser.post(
            "/predict", data={"csrf_token": token}, files=[("files", ("big.png", big, "image/png"))]
        )
        assert response.status_code == 413
        assert "Upload too large" in response.text and "4 MB" in response.text
        # The connection stays usable: the next request is answered normally.
        assert browser.get("/healthz").json() == {"status": "ok"}
    assert "big.png" not in log.read_text(errors="replace")
