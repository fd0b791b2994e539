"""Swagger UI (/docs) and ReDoc (/redoc) served with their assets from the API itself.

FastAPI's default pages load their JavaScript and CSS from a CDN, so they are blank on a
hospital network. The assets come from the pinned `fastapi-offline` wheel (MIT), which ships the
Swagger UI (Apache-2.0) and ReDoc (MIT) bundles and a favicon; they are served under ASSETS_URL.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"
# The one outside URL in the ReDoc bundle: the sidebar's "API docs by Redocly" logo. With an
# empty src the image fails at once and ReDoc hides it (its onError handler).
REDOC_LOGO = b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
ASSETS = {  # file name → media type; nothing else is served
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


@cache
def read_asset(name: str) -> bytes:
    """One of ASSETS, read once; ReDoc's bundle without its CDN logo."""
    data = (ASSETS_DIR / name).read_bytes()
    return data.replace(REDOC_LOGO, b'src:""') if name == "redoc.standalone.js" else data


def add_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at docs_url and ReDoc at redoc_url; no request leaves this server."""
    if app.docs_url or app.redoc_url:
        raise ValueError("build the app with docs_url=None, redoc_url=None: add_docs serves them")
    openapi_url = app.openapi_url or "/openapi.json"

    # A route, not a static mount: the app's dependencies (the API-key check) apply here too.
    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(status_code=404)
        return Response(
            read_asset(name),
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # validatorUrl null: Swagger UI would otherwise call an online validator
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} — ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
