"""The API's own errors, and the one table that maps every error to an HTTP status.

Image errors come from `cxr.errors` (the core knows nothing of HTTP); the rest are about requests,
capacity and the server's state. `status_of` is the only place a status is chosen for an error.
"""

from __future__ import annotations

from cxr.errors import ImageError, ImageTooLarge, InvalidImage, UnsupportedMediaType


class ApiError(Exception):
    """Base class of the service's own errors: a human message and a machine-readable code."""

    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """A malformed request (wrong tensor shape/dtype, missing field, …)."""

    code = "bad_request"


class Overloaded(ApiError):
    """The service holds MAX_QUEUE images already; the client should retry after a moment."""

    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ApiError):
    """The request waited longer than its deadline before compute started."""

    code = "deadline_exceeded"


class ModelNotReady(ApiError):
    """The model is not loaded yet, or the server is draining."""

    code = "not_ready"


class InferenceFailed(ApiError):
    """ONNX Runtime raised while running a batch."""

    code = "inference_failed"


class InputRejected(ApiError):
    """STRICT_INPUT_GUARD is on and the input guard flagged the image."""

    code = "input_guard"


class TooManyFiles(ApiError):
    """A request carries more files than MAX_BATCH_FILES."""

    code = "too_many_files"


class UploadStalled(ApiError):
    """The client stopped sending its upload for longer than UPLOAD_IDLE_TIMEOUT_S."""

    code = "upload_timeout"


class Unauthorized(ApiError):
    """Missing or wrong API key (the message never says which)."""

    code = "unauthorized"


class ModelNotFound(ApiError):
    """An OIP v2 request names a model (or version) this server does not serve."""

    code = "model_not_found"


class NothingToVerify(ApiError):
    """/v1/verify has no recorded sex or age to compare the prediction with."""

    code = "nothing_to_verify"


Error = ImageError | ApiError

STATUS: dict[type[Exception], int] = {
    InvalidImage: 422,
    UnsupportedMediaType: 415,
    ImageTooLarge: 413,
    BadRequest: 400,
    Unauthorized: 401,
    ModelNotFound: 404,
    UploadStalled: 408,
    TooManyFiles: 413,
    InputRejected: 422,
    NothingToVerify: 422,
    Overloaded: 429,
    InferenceFailed: 500,
    ModelNotReady: 503,
    DeadlineExceeded: 504,
}


def status_of(exc: Exception) -> int:
    """The HTTP status of an error (most specific class first); 500 for anything unlisted."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
