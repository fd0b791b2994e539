"""Why an image could not be read. Messages name the problem and the value; no HTTP status codes
here — the service maps each class to a status in one table (service/errors.py), training reports
and skips."""

from __future__ import annotations


class ImageError(Exception):
    """Base class: a human message and a machine-readable `code`."""

    code: str = "invalid_image"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(ImageError):
    """The bytes claim a supported format but cannot be decoded (corrupt, truncated, too small)."""

    code = "invalid_image"


class UnsupportedMediaType(ImageError):
    """The bytes are not an image format we read (PDF, HTML, GIF, unknown, undecodable DICOM)."""

    code = "unsupported_media_type"


class ImageTooLarge(ImageError):
    """Too many bytes, or a header that declares too many pixels (decompression bombs)."""

    code = "image_too_large"
