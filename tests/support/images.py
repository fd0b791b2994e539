"""Image inputs: a synthetic chest X-ray, encoders, a DICOM writer and sample uploads.

scripts/make_hostile_corpus.py builds its crafted files from these same pieces.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.support.paths import NIH_IMAGES


def xray(width: int = 256, height: int = 256, seed: int = 0, brightness: float = 1.0) -> np.ndarray:
    """A chest-X-ray-like uint8 image: bright ellipse body, two darker lungs, black padding."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width / 2, height / 2
    body = ((xx - cx) / (0.42 * width)) ** 2 + ((yy - cy) / (0.48 * height)) ** 2 < 1
    img = np.where(body, 170.0, 0.0)
    for side in (-1, 1):
        lung = ((xx - cx - side * 0.18 * width) / (0.12 * width)) ** 2 + (
            (yy - cy) / (0.3 * height)
        ) ** 2 < 1
        img = np.where(lung, 70.0, img)
    img = img * brightness + rng.normal(0, 6, img.shape) * body
    return np.clip(img, 0, 255).astype(np.uint8)


def xray_array(
    width: int = 200, height: int = 240, seed: int = 0, brightness: float = 1.0
) -> np.ndarray:
    """`xray` at the API tests' default size (200×240: not square, so resizing is exercised)."""
    return xray(width, height, seed, brightness)


def slow_png() -> bytes:
    """6000×6000 grey PNG (~2 MB) that takes a few hundred ms to decode: it keeps a decoding
    thread busy while a test does something else."""
    return encode(
        np.kron(xray_array(1500, 1500, seed=1), np.ones((4, 4), np.uint8)), compress_level=1
    )


def encode(
    img: Image.Image | np.ndarray, fmt: str = "PNG", mode: str | None = None, **save: object
) -> bytes:
    """Encode an image (or a uint8/uint16 array) in a Pillow format, converted to `mode` first
    when given; `save` goes to Pillow (quality, exif, save_all, ...)."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def dicom(
    pixels: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    frame: bytes | None = None,
    bits_stored: int = 12,
    truncate_to: int | None = None,
) -> bytes:
    """A DICOM Part-10 file (16-bit grey, a digital X-ray) written by pydicom; the knobs break it
    on purpose: no pixels, one encapsulated `frame` (a real codestream, or junk) in a compressed
    `syntax`, or pixel data cut to `truncate_to` bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.Modality, ds.PatientSex, ds.PatientAge = "DX", "F", "054Y"
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
        ds.PixelRepresentation = 0
        raw = pixels.astype(np.uint16).tobytes()
        if frame is not None:
            ds.PixelData = encapsulate([frame])
        else:
            ds.PixelData = raw[:truncate_to] if truncate_to is not None else raw
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def sample_png(n: int = 0) -> bytes:
    """A real chest X-ray from the shared NIH subset, or a synthetic radiograph-like PNG."""
    images = sorted(NIH_IMAGES.glob("*.png")) if NIH_IMAGES.is_dir() else []
    if images:
        return images[n % len(images)].read_bytes()
    img = Image.new("L", (128, 128), 10)
    draw = ImageDraw.Draw(img)
    draw.ellipse((20 + n, 15, 60, 115), fill=150)
    draw.ellipse((68, 15, 108 - n, 115), fill=150)
    return encode(img)


def sample_dicom(n: int = 0) -> bytes:
    """A 12-bit MONOCHROME2 DICOM (no file extension needed) made from `sample_png(n)`."""
    grey = np.asarray(Image.open(io.BytesIO(sample_png(n))).convert("L"), dtype=np.uint16) * 16
    return dicom(grey)


def sample_tiff(n: int = 0) -> bytes:
    """`sample_png(n)` re-encoded as TIFF (browsers cannot show it; the thumbnail must be PNG)."""
    return encode(Image.open(io.BytesIO(sample_png(n))), "TIFF")
