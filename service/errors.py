"""Domain exceptions, mapped to HTTP status codes once (service/app.py registers the handlers).

Imported by training too (through service/imaging.py), so this module imports no web framework.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: carries the HTTP status and a machine-readable code."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(ServiceError):
    """The bytes claim a supported format but cannot be decoded (corrupt, truncated, too small)."""

    status_code = 422
    code = "invalid_image"


class UnsupportedMediaType(ServiceError):
    """The bytes are not an image format we read (PDF, HTML, GIF, unknown, undecodable DICOM)."""

    status_code = 415
    code = "unsupported_media_type"


class ImageTooLarge(ServiceError):
    """Too many bytes, or a header that declares too many pixels (decompression bombs)."""

    status_code = 413
    code = "image_too_large"


class BadRequest(ServiceError):
    """A malformed request (wrong tensor shape/dtype, missing field, …)."""

    status_code = 400
    code = "bad_request"


class Overloaded(ServiceError):
    """The batcher's queue is full; the client should retry after a moment."""

    status_code = 429
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ServiceError):
    """The request waited longer than its deadline before compute started."""

    status_code = 504
    code = "deadline_exceeded"


class ModelNotReady(ServiceError):
    """The model is not loaded yet, or the server is draining."""

    status_code = 503
    code = "not_ready"


class InferenceFailed(ServiceError):
    """ONNX Runtime raised while running a batch."""

    status_code = 500
    code = "inference_failed"


class InputRejected(ServiceError):
    """STRICT_INPUT_GUARD is on and the input guard flagged the image."""

    status_code = 422
    code = "input_guard"


class TooManyFiles(ServiceError):
    """A batch request carries more files than MAX_BATCH_FILES."""

    status_code = 413
    code = "too_many_files"


class UploadStalled(ServiceError):
    """The client stopped sending its upload for longer than UPLOAD_IDLE_TIMEOUT_S."""

    status_code = 408
    code = "upload_timeout"


class Unauthorized(ServiceError):
    """Missing or wrong API key (the message never says which)."""

    status_code = 401
    code = "unauthorized"


class ModelNotFound(ServiceError):
    """An OIP v2 request names a model (or version) this server does not serve."""

    status_code = 404
    code = "model_not_found"
