"""Uploads kept in memory, CSRF tokens for form posts, and security headers on every response."""

from __future__ import annotations

import hmac
import io
import secrets
from typing import IO

from flask import Flask, Request, Response, request, session
from werkzeug.exceptions import BadRequest

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# JSON endpoints for scripts: they carry no session and change no state, so cross-site posts gain
# an attacker nothing they could not get by calling the API directly.
CSRF_EXEMPT = frozenset({"web.api_predict"})

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",  # no inline scripts: the page's JS lives in static/
    "style-src 'self'",
    "img-src 'self' data:",  # thumbnails arrive as data: URIs so no upload is ever stored
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class CsrfFailed(BadRequest):
    """A form post without the session's CSRF token (forged, or the page outlived the session)."""

    description = (
        "This form has expired or did not come from this site (missing or wrong CSRF token). "
        "Reload the page and upload again."
    )


class InMemoryRequest(Request):
    """Werkzeug spools uploads over 500 KB to temporary files; patient images must never touch disk."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        # MAX_CONTENT_LENGTH bounds the whole body, so memory use is bounded too.
        return io.BytesIO()


def csrf_token() -> str:
    """This session's CSRF token, created on first use (templates call it)."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf() -> None:
    """Refuse unsafe requests whose token does not match the session's (before_request hook)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in CSRF_EXEMPT:
        return
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise CsrfFailed()


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
    app.after_request(add_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
