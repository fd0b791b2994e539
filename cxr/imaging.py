"""Bytes → one clean grey image → the model's input tensor. The only implementation.

Training (training/loading.py) and serving (service/engine.py) both call `decode` /
`preprocess_array` (or `preprocess_bytes`), so the two paths cannot drift. Pure functions: no I/O,
no globals, no web
framework. Intensity normalisation is *not* done here: the tensor holds grey levels 0–255 as
float32 and the model graph rescales them (a Rescaling layer), so model.onnx is self-describing.

Pipeline: sniff format from magic bytes → check declared pixel count from the header (before any
decode, so decompression bombs cost nothing) → decode to one channel (PNG 8/16-bit, grey/RGB/RGBA/
palette; JPEG incl. CMYK and EXIF orientation; TIFF; BMP; WebP; DICOM with modality LUT, VOI LUT
and MONOCHROME1 inversion) → uint8 → crop black padding borders → letterbox to size×size.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

PREPROCESSING_ID = "cxr-gray-crop-letterbox-v1"
DEFAULT_MAX_PIXELS = 50_000_000
MIN_IMAGE_SIDE = 32  # smaller than this is not a radiograph we can say anything about

# Pillow's own bomb guard would raise before ours with a less useful message; we check the
# header ourselves against the configured limit.
Image.MAX_IMAGE_PIXELS = None

DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class PreprocessParams:
    """Everything that defines the tensor; stored in the model card under `preprocessing`
    (cxr/card.py converts both ways)."""

    size: int = 256  # output is size × size, one channel
    border_threshold: int = 10  # grey level at or below which an edge row/column counts as padding
    border_min_fraction: float = 0.02  # share of pixels above threshold that makes a row content
    resample: str = "bilinear"


_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}

_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"%PDF", "pdf"),
]
SUPPORTED_FORMATS = ("png", "jpeg", "tiff", "bmp", "webp", "dicom")


def sniff_format(data: bytes) -> str:
    """Name the format from magic bytes: one of SUPPORTED_FORMATS, or a description of what it
    is."""
    if len(data) == 0:
        return "empty"
    if (
        len(data) >= DICOM_MAGIC_OFFSET + 4
        and data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"
    ):
        return "dicom"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    if head.startswith((b"<?xml", b"<svg")):
        return "xml/svg"
    try:
        data[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary data"


@dataclass(frozen=True)
class Decoded:
    """One decoded file: the grey image and what the input guard needs to know of the source."""

    gray: npt.NDArray[np.uint8]  # (H, W)
    format: str  # one of SUPPORTED_FORMATS
    colourfulness: float  # of the source before grey conversion (see colourfulness); 0 for grey


def decode(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_IMAGE_SIDE
) -> Decoded:
    """Decode any supported file to one grey image; raise an ImageError naming the problem."""
    fmt = sniff_format(data)
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(
            f"not a supported image (found {fmt}); send PNG, JPEG, TIFF, BMP, WebP or DICOM"
        )
    if fmt == "dicom":
        gray, colour = _decode_dicom(data, max_pixels)
    else:
        gray, colour = _decode_pillow(data, fmt, max_pixels)
    h, w = gray.shape
    if min(h, w) < min_side:
        raise InvalidImage(
            f"image is {w}×{h} pixels; the smallest side must be at least {min_side}"
        )
    return Decoded(gray, fmt, colour)


def decode_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_IMAGE_SIDE
) -> npt.NDArray[np.uint8]:
    """decode(...).gray: the 2-D uint8 grey image (H, W)."""
    return decode(data, max_pixels=max_pixels, min_side=min_side).gray


COLOUR_SAMPLE_SIDE = 128  # colourfulness is a global statistic: a small sample measures it


def colourfulness(rgb: npt.NDArray[np.uint8]) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of an (H, W, 3) image: 0 grey, ~15 slight, ~33
    moderate."""
    a = rgb.astype(np.float32)
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    spread = float(np.sqrt(rg.var() + yb.var()))
    offset = float(np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    return spread + 0.3 * offset


def _pil_colourfulness(img: Image.Image) -> float:
    """Colourfulness of a decoded Pillow image, measured on a box-reduced copy (≤ ~128 px)."""
    if img.mode in ("L", "LA", "La", "1", "I", "F") or img.mode.startswith("I;16"):
        return 0.0  # one channel: no colour to measure
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    step = max(1, max(rgb.size) // COLOUR_SAMPLE_SIDE)
    small = rgb.reduce(step) if step > 1 else rgb
    return colourfulness(np.asarray(small, dtype=np.uint8))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image header declares {width}×{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}×{height} = {width * height / 1e6:.1f} MP; "
            f"limit is {max_pixels / 1e6:g} MP"
        )


def _decode_pillow(data: bytes, fmt: str, max_pixels: int) -> tuple[npt.NDArray[np.uint8], float]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            f"{fmt.upper()} header could not be read ({exc.__class__.__name__})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        raise InvalidImage(f"{fmt.upper()} header could not be read: {exc}") from None
    _check_pixels(img.width, img.height, max_pixels)
    if getattr(img, "n_frames", 1) > 1 and fmt not in ("tiff",):
        raise UnsupportedMediaType(
            f"animated {fmt.upper()} with {img.n_frames} frames; send one still image"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: a copy costs ~1 ms at 1024²
            return _pil_to_gray(img), _pil_colourfulness(img)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage(f"{fmt.upper()} data is corrupt or truncated: {exc}") from None


def _pil_to_gray(img: Image.Image) -> npt.NDArray[np.uint8]:
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _stretch_to_uint8(np.asarray(img).astype(np.float32))
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0), dtype=np.uint8)
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
    if mode == "CMYK" or img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")
    if img.mode == "RGBA":
        img = img.convert("RGB")  # chest X-rays carry a constant alpha; ignore it
    return np.asarray(img.convert("L"), dtype=np.uint8)


def _stretch_to_uint8(a: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Map the image's own intensity range to 0–255 (16-bit PNG/TIFF and DICOM use 10–16 bits)."""
    a = np.nan_to_num(a.astype(np.float32, copy=False))
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def _decode_dicom(data: bytes, max_pixels: int) -> tuple[npt.NDArray[np.uint8], float]:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except Exception as exc:  # noqa: BLE001
        raise InvalidImage(f"DICOM file could not be parsed: {exc}") from None
    if "PixelData" not in ds:
        raise InvalidImage("DICOM file has no pixel data (PixelData element missing)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_pixels(cols, rows, max_pixels)
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(ts, "name", str(ts))
        if _dicom_decoder_available(ts):  # we can read this syntax: the data itself is broken
            raise InvalidImage(f"DICOM pixel data ({name}, {ts}) is corrupt: {exc}") from None
        raise UnsupportedMediaType(
            f"DICOM transfer syntax {name} ({ts}) cannot be decoded here: no decoder installed "
            f"({exc})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated pixel data and friends
        raise InvalidImage(f"DICOM pixel data could not be read: {exc}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:  # colour DICOM: RGB / YBR
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        img = Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8), "RGB")
        return np.asarray(img.convert("L"), dtype=np.uint8), _pil_colourfulness(img)
    values = apply_modality_lut(pixels, ds)
    values = apply_voi_lut(values, ds)
    gray = _stretch_to_uint8(np.asarray(values, dtype=np.float32))
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return gray, 0.0


def _dicom_decoder_available(transfer_syntax: object) -> bool:
    """True when some installed pydicom plugin decodes this transfer syntax."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(transfer_syntax).is_available)  # type: ignore[arg-type]
    except (NotImplementedError, ValueError, TypeError):
        return False


def crop_borders(
    gray: npt.NDArray[np.uint8], params: PreprocessParams = PreprocessParams()
) -> npt.NDArray[np.uint8]:
    """Remove black padding rows/columns at the edges (scans padded to a square)."""
    content = gray > params.border_threshold
    h, w = content.shape
    # Integer sums divided once give the same fractions as bool.mean(), at half the cost.
    rows = np.flatnonzero(content.sum(axis=1, dtype=np.int32) / w > params.border_min_fraction)
    cols = np.flatnonzero(content.sum(axis=0, dtype=np.int32) / h > params.border_min_fraction)
    if rows.size == 0 or cols.size == 0:
        return gray  # nothing but padding: leave it for the model (and the input guard) to judge
    return gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def letterbox(
    gray: npt.NDArray[np.uint8], size: int, resample: str = "bilinear"
) -> npt.NDArray[np.uint8]:
    """Resize keeping the aspect ratio so the longer side is `size`; pad with black, centred."""
    h, w = gray.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = Image.fromarray(gray, "L")
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), _RESAMPLE[resample])
    out = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = np.asarray(img, dtype=np.uint8)
    return out


def preprocess_array(
    gray: npt.NDArray[np.uint8], params: PreprocessParams
) -> npt.NDArray[np.float32]:
    """Clean a decoded grey image into the model's input: float32 (size, size, 1), values 0–255."""
    boxed = letterbox(crop_borders(gray, params), params.size, params.resample)
    return boxed.astype(np.float32)[:, :, None]


def preprocess_bytes(
    data: bytes, params: PreprocessParams, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> npt.NDArray[np.float32]:
    """Encoded file → model input tensor (size, size, 1) float32. Raises ImageError subclasses."""
    return preprocess_array(decode_image(data, max_pixels=max_pixels), params)


def encode_png(gray: npt.NDArray[np.uint8]) -> bytes:
    """A 2-D uint8 image as PNG bytes (thumbnails, previews, heat-map overlays)."""
    buf = io.BytesIO()
    Image.fromarray(gray, "L").save(buf, format="PNG")
    return buf.getvalue()
