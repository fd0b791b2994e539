"""Every class of bad input gets a clear 4xx naming the problem — never a 500 — and DICOM works."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless

from scripts.make_hostile_corpus import png_claiming
from tests.support.images import dicom, encode, xray_array
from tests.support.models import direct_ort

TWELVE_BIT = (xray_array(64, 64) * 16).astype(np.uint16)
# an encapsulated frame for a compressed syntax: a JPEG 2000 marker, then pixels, not a codestream
JUNK_FRAME = b"\xff\x4f\xff\x51" + TWELVE_BIT.tobytes()[:64]


def post(server, data: bytes, filename: str = "x.png") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/predict", files={"file": (filename, data)}, timeout=30)


@pytest.mark.parametrize(
    "data,status,needle",
    [
        (b"", 415, "empty"),
        (b"hello, this is not an image", 415, "text"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", 415, "html"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", 415, "pdf"),
        (encode(xray_array(), "GIF"), 415, "gif"),
        (encode(xray_array())[:300], 422, "PNG"),
        (encode(xray_array(), "JPEG")[:400], 422, "JPEG"),
        (png_claiming(65535, 65535), 413, "65535×65535"),
        (png_claiming(40000, 40000, bit_depth=1), 413, "40000×40000"),
        (png_claiming(0, 10), 422, "PNG"),
        (encode(np.full((1, 1), 128, np.uint8)), 422, "1×1"),
        (encode(np.full((20, 300), 128, np.uint8)), 422, "300×20"),
        (dicom(None), 422, "no pixel data"),
        # no HTJ2K decoder is installed (pyjpegls, which highdicom brings, reads JPEG-LS only): 415
        # naming the syntax
        (dicom(TWELVE_BIT, syntax=HTJ2KLossless, frame=JUNK_FRAME), 415, "1.2.840.10008.1.2.4.201"),
        # Pillow decodes JPEG 2000, so junk in that syntax is corrupt data, not a missing decoder
        (
            dicom(TWELVE_BIT, syntax=JPEG2000Lossless, frame=JUNK_FRAME),
            422,
            "1.2.840.10008.1.2.4.90) is corrupt",
        ),
    ],
)
def test_bad_file_gets_named_4xx(server, data, status, needle) -> None:
    r = post(server, data)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "code"}
    assert needle.lower() in body["detail"].lower()
    assert post(server, encode(xray_array(seed=9))).status_code == 200  # and it keeps serving


def test_upload_over_limit_is_413_while_reading(serve, settings_for) -> None:
    srv = serve(settings_for(max_upload_bytes=50_000))
    big = encode(np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))
    assert len(big) > 50_000
    r = post(srv, big)
    assert r.status_code == 413 and "MAX_UPLOAD_BYTES" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold while streaming
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = httpx.post(f"{srv.url}/v1/predict", content=chunks())
    assert r.status_code == 413 and r.json()["code"] == "image_too_large"


def test_pixel_limit_from_settings(serve, settings_for) -> None:
    srv = serve(settings_for(max_image_pixels=10_000))
    r = post(srv, encode(xray_array(200, 200)))
    assert r.status_code == 413 and "200×200" in r.json()["detail"]


@pytest.mark.parametrize(
    "files,needle",
    [
        ({"other": ("a.png", b"x")}, "'file'"),
        ([("file", ("a.png", b"x")), ("file", ("b.png", b"y"))], "got 2"),
    ],
)
def test_malformed_multipart(server, files, needle) -> None:
    r = httpx.post(f"{server.url}/v1/predict", files=files)
    assert r.status_code == 400 and needle in r.json()["detail"]


def test_multipart_without_boundary_and_huge_filename(server) -> None:
    r = httpx.post(
        f"{server.url}/v1/predict",
        content=b"--x--",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert r.status_code == 400 and "boundary" in r.json()["detail"]
    r = httpx.post(
        f"{server.url}/v1/predict/batch",
        files=[("files", ("n" * 1000 + ".png", encode(xray_array())))],
    )
    assert r.status_code == 200 and len(r.json()["results"][0]["filename"]) == 255
    r = httpx.post(
        f"{server.url}/v1/predict/batch",
        files=[("files", ("n" * 9000 + ".png", encode(xray_array())))],
    )
    assert r.status_code == 400 and "header" in r.json()["detail"], r.text


def test_wrong_content_type_is_sniffed_not_trusted(server) -> None:
    r = httpx.post(
        f"{server.url}/v1/predict",
        content=encode(xray_array()),
        headers={"Content-Type": "application/pdf"},
    )
    assert r.status_code == 200


def test_unknown_route_and_method(server) -> None:
    r = httpx.get(f"{server.url}/v1/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = httpx.get(f"{server.url}/v1/predict")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


def test_dicom_upload(server, model_dir) -> None:
    pixels = xray_array(200, 240, seed=11).astype(np.uint16) * 16  # 12-bit
    answers = {}
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        data = dicom(pixels, photometric=photometric)
        assert data[128:132] == b"DICM"
        r = post(server, data, filename="scan.dcm")
        assert r.status_code == 200, r.text
        assert r.json()["age_years"] == pytest.approx(direct_ort(model_dir, data)[0], abs=1e-4)
        answers[photometric] = r.json()["age_years"]
    # MONOCHROME1 is inverted before the model sees it: the mean-driven tiny model must differ
    assert abs(answers["MONOCHROME1"] - answers["MONOCHROME2"]) > 5
