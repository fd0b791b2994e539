"""cxr/imaging.py: every decoder, border crop, letterbox, determinism, train↔serve parity."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxr.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from cxr.imaging import (
    PreprocessParams,
    crop_borders,
    decode_image,
    letterbox,
    preprocess_array,
    preprocess_bytes,
    sniff_format,
)
from training.data import Record
from training.loading import load_image
from training.phantom import PhantomSample, generate_phantom, phantom_dicom, phantom_png


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(7, 128)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def stretched(a: np.ndarray) -> np.ndarray:
    """What the decoder does to 10–16-bit data: map the image's own range onto 0–255."""
    a = a.astype(np.float64)
    return np.clip((a - a.min()) * 255.0 / (a.max() - a.min()) + 0.5, 0, 255).astype(np.uint8)


# --- decoders -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA"])
def test_png_modes_decode_to_the_same_grey(phantom, mode):
    gray = decode_image(
        phantom_png(phantom, mode)
        if mode != "LA"
        else encode(Image.fromarray(phantom.image, "L").convert("LA"), "PNG")
    )
    assert gray.dtype == np.uint8 and gray.shape == phantom.image.shape
    assert np.array_equal(gray, phantom.image)


def test_png_16bit_is_stretched_to_8bit(phantom):
    wide = phantom.image.astype(np.uint16) * 200 + 1000  # a 16-bit range that does not start at 0
    gray = decode_image(encode(Image.fromarray(wide), "PNG"))
    assert np.abs(gray.astype(int) - stretched(phantom.image)).max() <= 1


def test_png_palette(phantom):
    pal = Image.fromarray(phantom.image, "L").convert("P")
    assert pal.mode == "P"
    gray = decode_image(encode(pal, "PNG"))
    assert np.abs(gray.astype(int) - phantom.image).max() <= 1


def test_rgb_colour_becomes_luma():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 255  # pure red → ITU-R 601 luma 76
    assert np.all(decode_image(encode(Image.fromarray(rgb, "RGB"), "PNG")) == 76)


def test_jpeg_cmyk(phantom):
    cmyk = Image.fromarray(phantom.image, "L").convert("CMYK")
    gray = decode_image(encode(cmyk, "JPEG", quality=95))
    assert gray.shape == phantom.image.shape
    assert np.abs(gray.astype(int) - phantom.image).mean() < 6


def test_jpeg_exif_orientation_is_applied():
    img = np.zeros((40, 80), np.uint8)
    img[:, :10] = 255  # bright band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    gray = decode_image(encode(Image.fromarray(img, "L"), "JPEG", quality=95, exif=exif.tobytes()))
    assert gray.shape == (80, 40)  # displayed upright: portrait
    assert gray[:10].mean() > 200 and gray[-10:].mean() < 30  # the band is now at the top


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "WEBP"])
def test_other_formats(phantom, fmt):
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(Image.fromarray(phantom.image, "L"), fmt, **kw)
    assert sniff_format(data) == fmt.lower()
    assert np.abs(decode_image(data).astype(int) - phantom.image).max() <= 1


def test_tiff_16bit(phantom):
    wide = phantom.image.astype(np.uint16) * 64
    gray = decode_image(encode(Image.fromarray(wide), "TIFF"))
    assert np.abs(gray.astype(int) - stretched(phantom.image)).max() <= 1


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_dicom_bit_depths(phantom, bits):
    gray = decode_image(phantom_dicom(phantom, bits=bits))
    assert np.abs(gray.astype(int) - stretched(phantom.image)).max() <= 1


def test_dicom_monochrome1_is_flipped(phantom):
    plain = decode_image(phantom_dicom(phantom, bits=16))
    inverted = decode_image(phantom_dicom(phantom, bits=16, monochrome1=True))
    assert np.abs(plain.astype(int) - inverted.astype(int)).max() <= 1


def test_dicom_rescale_slope_and_window(phantom):
    top = 4095
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    no_mask = np.zeros(ramp.shape, bool)
    ramp_sample = PhantomSample(ramp, 50.0, True, no_mask, no_mask)
    # Window over the upper half of the stored range: the lower half saturates to black.
    gray = decode_image(phantom_dicom(ramp_sample, bits=12, window=(3 * top / 4, top / 2)))
    assert gray[:, :120].max() == 0
    assert gray[:, 250:].min() > 240
    assert np.all(np.diff(gray[0, 130:].astype(int)) >= 0)  # monotone inside the window
    # A modality LUT (slope/intercept) alone is linear, so after stretching nothing changes.
    sloped = decode_image(phantom_dicom(phantom, bits=12, slope=2.0, intercept=-1024))
    assert np.abs(sloped.astype(int) - stretched(phantom.image)).max() <= 1


def test_dicom_compressed_without_decoder_is_a_clear_415(phantom):
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = dcmread(io.BytesIO(phantom_dicom(phantom, bits=16)))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises((UnsupportedMediaType, InvalidImage)) as err:
        decode_image(buf.getvalue())
    assert "JPEG 2000" in err.value.message or "1.2.840.10008.1.2.4.90" in err.value.message


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data,found",
    [
        (b"%PDF-1.7 ...", "PDF"),
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 40, "gif"),
        (b"<!DOCTYPE html><html>", "html"),
        (b"hello, world", "text"),
    ],
)
def test_not_an_image_is_unsupported(data, found):
    with pytest.raises(UnsupportedMediaType) as err:
        decode_image(data)
    assert found.lower() in err.value.message.lower()


def test_truncated_png_is_invalid(phantom):
    data = phantom_png(phantom)
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2])


def test_too_small_is_invalid():
    with pytest.raises(InvalidImage, match="16×16"):
        decode_image(encode(Image.new("L", (16, 16)), "PNG"))


def test_pixel_bomb_rejected_from_header():
    with pytest.raises(ImageTooLarge, match="3000×3000"):
        decode_image(encode(Image.new("L", (3000, 3000)), "PNG"), max_pixels=1_000_000)


# --- crop, letterbox, determinism, parity ----------------------------------------------------


def test_crop_borders_removes_black_padding():
    img = np.zeros((100, 160), np.uint8)
    img[10:90, 40:120] = 128
    out = crop_borders(img, PreprocessParams())
    assert out.shape == (80, 80) and np.all(out == 128)


def test_crop_borders_keeps_an_all_black_image():
    img = np.zeros((50, 60), np.uint8)
    assert crop_borders(img, PreprocessParams()).shape == (50, 60)


def test_letterbox_keeps_aspect_and_centres():
    img = np.full((100, 50), 200, np.uint8)  # tall
    out = letterbox(img, 64)
    assert out.shape == (64, 64)
    assert np.all(out[:, 16:48] == 200) and np.all(out[:, :16] == 0) and np.all(out[:, 48:] == 0)


def test_preprocess_crops_then_letterboxes_to_float_tensor():
    img = np.zeros((120, 200), np.uint8)
    img[10:110, 50:150] = 180  # a square of content inside black padding
    x = preprocess_array(img, PreprocessParams(size=64))
    assert x.shape == (64, 64, 1) and x.dtype == np.float32
    assert np.all(x == 180.0)  # padding gone, content fills the square


def test_preprocess_is_deterministic(phantom):
    data = phantom_png(phantom, "RGBA")
    a = preprocess_bytes(data, PreprocessParams(size=64))
    b = preprocess_bytes(data, PreprocessParams(size=64))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 255


@pytest.mark.parametrize("kind", ["png-rgba", "dicom-mono1", "jpeg"])
def test_training_and_serving_build_identical_tensors(tmp_path, kind):
    sample = generate_phantom(11, 200)
    if kind == "png-rgba":
        data = phantom_png(sample, "RGBA")
    elif kind == "dicom-mono1":
        data = phantom_dicom(sample, monochrome1=True)
    else:
        data = encode(Image.fromarray(sample.image, "L"), "JPEG", quality=90)
    path = tmp_path / "x"
    path.write_bytes(data)
    params = PreprocessParams(size=64)
    served = preprocess_bytes(data, params)  # what service/ does with the upload
    trained = load_image(
        Record(path, sample.age, sample.male), params
    )  # what training/ feeds Keras
    assert np.array_equal(served[:, :, 0], trained.astype(np.float32))
