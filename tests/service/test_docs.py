"""/docs and /redoc work without internet: every asset comes from the API itself."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from service.docs import ASSETS_URL

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENDPOINTS = ("/v1/predict", "/v1/predict/batch", "/v1/models")


def test_doc_pages_name_only_local_urls(server) -> None:
    for page in ("/docs", "/redoc"):
        html = httpx.get(server.url + page).text
        assert not re.findall(r"https?://", html), f"{page} names an outside URL"
        assets = re.findall(rf"['\"]({ASSETS_URL}/[^'\"]+)['\"]", html)
        assert assets, f"{page} loads no local asset"
        for asset in assets:
            r = httpx.get(server.url + asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset


def test_only_the_known_assets_are_served(server) -> None:
    for name in ("../app.py", "core.py", "nothing.js"):
        assert httpx.get(f"{server.url}{ASSETS_URL}/{name}").status_code == 404, name


def test_with_api_keys_the_docs_and_their_assets_need_a_key(serve, settings_for) -> None:
    locked = serve(settings_for(api_keys=["docs-key-123"]))
    asset = f"{locked.url}{ASSETS_URL}/swagger-ui.css"
    assert httpx.get(f"{locked.url}/docs").status_code == 401
    assert httpx.get(asset).status_code == 401
    assert httpx.get(asset, headers={"X-API-Key": "docs-key-123"}).status_code == 200


def test_docs_assets_are_not_in_the_schema(server) -> None:
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


@pytest.fixture()
def offline_page(browser, server) -> Iterator[tuple[object, list[str]]]:
    """A page that can reach only the test server; every other request is aborted and listed."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    blocked: list[str] = []
    local = urlsplit(server.url).netloc

    def route(r) -> None:
        if urlsplit(r.request.url).netloc == local:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort("internetdisconnected")

    page.route("**/*", route)
    yield page, blocked
    context.close()


@pytest.mark.browser
def test_swagger_ui_lists_endpoints_offline(offline_page, server) -> None:
    page, blocked = offline_page
    page.goto(server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    shown = page.locator(".opblock-summary-path").all_inner_texts()
    shown = [s.replace("\u200b", "").strip() for s in shown]  # Swagger UI breaks paths with ZWSP
    for endpoint in ENDPOINTS:
        assert endpoint in shown, shown
    assert blocked == []


@pytest.mark.browser
def test_redoc_lists_endpoints_offline(offline_page, server) -> None:
    page, blocked = offline_page
    page.goto(server.url + "/redoc")
    page.wait_for_selector('text="/v1/predict/batch"', timeout=30_000)
    text = page.inner_text("body")
    for endpoint in ENDPOINTS:
        assert endpoint in text
    assert blocked == []


def test_redoc_bundle_loads_no_logo_from_a_cdn(server) -> None:
    js = httpx.get(f"{server.url}{ASSETS_URL}/redoc.standalone.js").content
    assert len(js) > 500_000 and b"cdn.redoc.ly" not in js
