"""Plain helpers for the gateway tests (fixtures live in conftest.py)."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from flask.testing import FlaskClient

REPO = Path(__file__).resolve().parents[2]
NIH_IMAGES = REPO.parent / "shared" / "data" / "nih-cxr-1000" / "images"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90.0) -> None:
    """Poll `url` until it answers 200; fail with the process log if it dies or never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server we started, then kill it if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def csrf_token(client: FlaskClient) -> str:
    """Load the upload page like a browser and return the form's CSRF token."""
    page = client.get("/")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, "upload page has no CSRF field"
    return match.group(1)


def sample_png(n: int = 0) -> bytes:
    """A real chest X-ray from the shared NIH subset, or a synthetic radiograph-like PNG."""
    images = sorted(NIH_IMAGES.glob("*.png")) if NIH_IMAGES.is_dir() else []
    if images:
        return images[n % len(images)].read_bytes()
    from PIL import Image, ImageDraw

    img = Image.new("L", (128, 128), 10)
    draw = ImageDraw.Draw(img)
    draw.ellipse((20 + n, 15, 60, 115), fill=150)
    draw.ellipse((68, 15, 108 - n, 115), fill=150)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def post_files(client: FlaskClient, files: list[tuple[bytes, str]], token: str | None = "auto"):
    """Submit the upload form with (bytes, filename) pairs, as the browser does."""
    data: dict[str, object] = {"files": [(io.BytesIO(b), name) for b, name in files]}
    if token == "auto":
        token = csrf_token(client)
    if token is not None:
        data["csrf_token"] = token
    return client.post("/predict", data=data, content_type="multipart/form-data")


def sample_dicom(n: int = 0) -> bytes:
    """A 12-bit MONOCHROME2 DICOM (no file extension needed) made from a sample image."""
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    grey = np.asarray(Image.open(io.BytesIO(sample_png(n))).convert("L"), dtype=np.uint16) * 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.Rows, ds.Columns = "DX", *grey.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = grey.tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def sample_tiff(n: int = 0) -> bytes:
    """A sample image re-encoded as TIFF (browsers cannot display it; the thumbnail must be PNG)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(sample_png(n))).save(buf, format="TIFF")
    return buf.getvalue()
