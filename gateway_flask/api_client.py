"""The inference API over HTTP: one pooled httpx.Client, timeouts, errors as exceptions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

logger = logging.getLogger(__name__)

Readiness = Literal["ready", "not_ready", "down"]


@dataclass(frozen=True)
class Upload:
    """One file from the browser, kept in memory only."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


class ApiError(Exception):
    """The API answered with an error status; carries its `detail` and `code`."""

    def __init__(self, status: int, code: str, detail: str, retry_after_s: int | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s


class ApiUnavailable(Exception):
    """The API could not be reached or did not answer in time."""


class ApiClient:
    """Calls the endpoints of docs/contracts.md; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        health_timeout_s: float,
        api_key: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._health_timeout = httpx.Timeout(health_timeout_s)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            headers=headers,
            transport=transport,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._http.close()

    def predict(self, upload: Upload) -> dict[str, Any]:
        """POST /v1/predict with one file; the prediction JSON."""
        files = {"file": (upload.filename, upload.data, upload.content_type)}
        return self._request("POST", "/v1/predict", files=files).json()

    def predict_batch(self, uploads: Sequence[Upload]) -> dict[str, Any]:
        """POST /v1/predict/batch; per-file results in request order."""
        files = [("files", (u.filename, u.data, u.content_type)) for u in uploads]
        return self._request("POST", "/v1/predict/batch", files=files).json()

    def verify(self, upload: Upload, fields: dict[str, str]) -> dict[str, Any]:
        """POST /v1/verify; predicted vs recorded age/sex (fields: expected_sex, expected_age,
        …)."""
        files = {"file": (upload.filename, upload.data, upload.content_type)}
        return self._request("POST", "/v1/verify", files=files, data=fields).json()

    def explain(self, upload: Upload) -> dict[str, Any]:
        """POST /v1/explain; occlusion-sensitivity maps and overlays for one file."""
        files = {"file": (upload.filename, upload.data, upload.content_type)}
        return self._request("POST", "/v1/explain", files=files).json()

    def preview(self, upload: Upload) -> bytes:
        """POST /v1/preview; a PNG thumbnail of the cleaned grey image."""
        files = {"file": (upload.filename, upload.data, upload.content_type)}
        return self._request("POST", "/v1/preview", files=files).content

    def model_card(self) -> dict[str, Any]:
        """GET /v1/models; the model card."""
        return self._request("GET", "/v1/models").json()

    def readiness(self) -> Readiness:
        """GET /readyz with a short timeout: ready, not_ready (answers 503) or down."""
        try:
            response = self._http.get("/readyz", timeout=self._health_timeout)
        except httpx.HTTPError:
            return "down"
        return "ready" if response.status_code == 200 else "not_ready"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnavailable(
                f"the inference API did not answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiUnavailable(
                f"the inference API is unreachable ({type(exc).__name__})"
            ) from exc
        if response.is_success:
            return response
        raise _api_error(response)


def _api_error(response: httpx.Response) -> ApiError:
    """Turn an error response into ApiError, tolerating bodies that are not the contract's JSON."""
    code, detail = "api_error", f"the inference API answered {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or code)
        raw_detail = body.get("detail")
        if isinstance(raw_detail, str) and raw_detail:
            detail = raw_detail
        elif raw_detail:  # FastAPI's validation errors are a list of dicts
            detail = str(raw_detail)
    return ApiError(response.status_code, code, detail, _retry_after(response))


def _retry_after(response: httpx.Response) -> int | None:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(1, round(float(raw))) if raw else None
    except ValueError:
        return None
