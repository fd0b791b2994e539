"""Every failure becomes a friendly page (or JSON under /api/) with a status code; registered
once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from gateway_flask.api_client import ApiError, ApiUnavailable
from gateway_flask.security import CsrfFailed

logger = logging.getLogger(__name__)

API_DOWN_RETRY_S = 10
NOT_READY_RETRY_S = 5
# Read and discard at most this many bytes of an oversized body so the browser sees the 413 page
# rather than a reset connection; bigger bodies are cut off.
DRAIN_LIMIT_BYTES = 512 * 1024 * 1024


class UploadRejected(BadRequest):
    """The request itself is unusable (no file, too many files); the message says why."""

    code = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)


@dataclass(frozen=True)
class Problem:
    """What to tell the person (or script) and which status to answer with."""

    status: int
    code: str
    title: str
    message: str
    retry_after_s: int | None = None


def problem_from_api_error(exc: ApiError) -> Problem:
    """Map an error answer of the API to what the web app says."""
    if exc.status == 429:
        wait = exc.retry_after_s or 1
        return Problem(
            429,
            exc.code,
            "The service is busy",
            f"Too many images are being analysed right now. Please try again in "
            f"{wait} second{'s' if wait != 1 else ''}.",
            wait,
        )
    if exc.status == 503:
        wait = exc.retry_after_s or NOT_READY_RETRY_S
        return Problem(
            503,
            exc.code,
            "The model is not ready",
            f"The inference service is starting or restarting. Please try again in {wait} seconds.",
            wait,
        )
    if exc.status == 504:
        return Problem(
            504,
            exc.code,
            "The service took too long",
            f"The inference service gave up waiting: {exc.detail}. Please try again.",
            NOT_READY_RETRY_S,
        )
    if exc.status in (401, 403):
        return Problem(
            502,
            exc.code,
            "The web app is not allowed to use the inference service",
            f"The inference service refused this web app's credentials ({exc.status}): "
            "check GATEWAY_API_KEY against the API's API_KEYS, or tell the administrator.",
        )
    if 400 <= exc.status < 500:
        return Problem(
            exc.status,
            exc.code,
            "The upload was refused",
            f"The inference service refused the upload: {exc.detail}",
        )
    return Problem(
        502,
        exc.code,
        "The inference service failed",
        f"The inference service failed ({exc.status}): {exc.detail}. Please try again; "
        "if it keeps failing, tell the administrator.",
    )


def problem_from_http(exc: HTTPException, max_upload_bytes: int, max_files: int) -> Problem:
    """Map Flask/Werkzeug's own errors (404, 405, 413, CSRF, bad uploads)."""
    status = exc.code or 500
    length = request.content_length
    if isinstance(exc, RequestEntityTooLarge) and length is not None and length <= max_upload_bytes:
        # Werkzeug says 413 for too many form parts too; the bytes were within the limit.
        return Problem(
            413,
            "too_many_parts",
            "Too many files",
            f"This upload has too many files or form fields; the limit is {max_files} "
            "files per upload.",
        )
    if isinstance(exc, RequestEntityTooLarge):
        return Problem(
            413,
            "upload_too_large",
            "Upload too large",
            f"The files you chose are larger than this site accepts in one upload "
            f"({_megabytes(max_upload_bytes)}). Upload fewer or smaller files at a time.",
        )
    if isinstance(exc, CsrfFailed):
        return Problem(400, "csrf_failed", "Form expired", exc.description or "")
    if isinstance(exc, UploadRejected):
        return Problem(400, "bad_request", "Nothing to analyse", exc.description or "")
    return Problem(status, exc.name.lower().replace(" ", "_"), exc.name, exc.description or "")


def render_problem(problem: Problem) -> Response:
    """JSON {"detail", "code"} under /api/, otherwise the page with the upload form again."""
    if request.path.startswith("/api/"):
        response = jsonify({"detail": problem.message, "code": problem.code})
    else:
        response = Response(
            render_template(
                "error.html",
                problem=problem,
                show_upload=request.endpoint in ("web.index", "web.predict_form")
                or problem.status == 413,
            )
        )
    response.status_code = problem.status
    if problem.retry_after_s:
        response.headers["Retry-After"] = str(problem.retry_after_s)
    return response


def register_error_handlers(app: Flask, max_upload_bytes: int, max_files: int) -> None:
    """Install the handlers on `app`."""

    @app.errorhandler(ApiUnavailable)
    def api_unavailable(exc: ApiUnavailable) -> Response:
        logger.warning("inference API unavailable: %s", exc)
        return render_problem(
            Problem(
                503,
                "api_unavailable",
                "The inference service cannot be reached",
                f"The web page cannot reach the inference service right now. Please try again in "
                f"{API_DOWN_RETRY_S} seconds; if this keeps happening, tell the administrator.",
                API_DOWN_RETRY_S,
            )
        )

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        logger.info("inference API answered %d %s", exc.status, exc.code)
        return render_problem(problem_from_api_error(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if isinstance(exc, RequestEntityTooLarge):
            _drain_body()
        return render_problem(problem_from_http(exc, max_upload_bytes, max_files))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return render_problem(
            Problem(
                500,
                "internal_error",
                "Something went wrong",
                "The web app hit an unexpected error. Please try again.",
            )
        )


def _drain_body() -> None:
    """Consume the rest of an oversized upload so the client reads our answer."""
    length = request.content_length
    if length is None or length > DRAIN_LIMIT_BYTES:
        return
    stream = request.environ.get("wsgi.input")
    try:
        while length > 0 and stream is not None:
            chunk = stream.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
    except OSError:
        pass


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"
