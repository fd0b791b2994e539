"""Uploads kept in memory, CSRF tokens for form posts, and security headers on every response."""

from __future__ import annotations

import hmac
import io
import re
import secrets
from typing import IO

from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import BadRequest

CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "csrf_token"
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,64}")
CSRF_HEADER = "X-CSRF-Token"
# JSON endpoints for scripts: they rely on no cookie and change no state, so cross-site posts gain
# an attacker nothing they could not get by calling the API directly.
CSRF_EXEMPT = frozenset({"web.api_predict", "web.api_explain"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    "script-src 'self'; "  # no inline scripts: the page's JS lives in static/
    "style-src 'self'; "
    "img-src 'self' data:; "  # thumbnails arrive as data: URIs so no upload is ever stored
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class CsrfFailed(BadRequest):
    """A form post without the browser's CSRF token (forged, or cookies were cleared)."""

    description = (
        "This form has expired or did not come from this site (missing or wrong CSRF token; "
        "are cookies blocked?). Reload the page and upload again."
    )


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to temporary files; patient images must never touch
    disk."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        # MAX_CONTENT_LENGTH bounds the whole body, so memory use is bounded too.
        return io.BytesIO()


def csrf_token() -> str:
    """The browser's CSRF token, created on first use (templates call it)."""
    token = g.get("csrf_token") or request.cookies.get(CSRF_COOKIE, "")
    if not _TOKEN_SHAPE.fullmatch(token):
        token = secrets.token_urlsafe(32)
        g.csrf_new = True
    g.csrf_token = token
    return token


def check_csrf() -> None:
    """Refuse unsafe requests whose token does not match the CSRF cookie (before_request hook)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in CSRF_EXEMPT:
        return
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not _TOKEN_SHAPE.fullmatch(expected) or not hmac.compare_digest(expected, sent):
        raise CsrfFailed()


def set_csrf_cookie(response: Response) -> Response:
    """Send the token created while rendering this page (after_request hook)."""
    if g.get("csrf_new"):
        # Double-submit cookie: a cross-site page can neither read it nor (SameSite=Strict) make
        # the browser send it. Needs no server state or shared key, so any gunicorn worker can
        # check a form another worker rendered.
        response.set_cookie(
            CSRF_COOKIE,
            g.csrf_token,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
            path="/",
        )
    return response


def add_security_headers(response: Response) -> Response:
    """Set CSP and friends; pages that may show patient data are never cached."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def init_security(app: Flask) -> None:
    """Install the request class, CSRF check, headers and cookie settings on `app`."""
    app.request_class = InMemoryRequest
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.before_request(check_csrf)
    app.after_request(set_csrf_cookie)
    app.after_request(add_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
