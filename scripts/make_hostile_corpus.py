"""Generate the crafted-file corpus for the reliability tests (issue 7); no binaries are committed.

Two sets, each file with the answer the API owes it:
  hostile  — broken, disguised or malicious files: a 4xx whose message names the problem;
  unusual  — valid images in awkward encodings: accepted (200).

    python -m scripts.make_hostile_corpus OUT_DIR     # writes the files + manifest.json

Run it from the repository root: the synthetic X-ray, the encoder and the DICOM writer come from
tests/support/images.py, which the tests share. Tests import `hostile_cases()` / `unusual_cases()`
and post the bytes straight from memory.
"""

from __future__ import annotations

import argparse
import json
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import HTJ2KLossless, JPEG2000Lossless, RLELossless

from tests.support.images import dicom, encode, xray

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Case:
    """One crafted file and what the API must answer (status; text its message must contain)."""

    name: str
    data: bytes = field(repr=False)
    status: int
    needle: str = ""


# ---------------------------------------------------------------------------- building blocks


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ihdr(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))


def png_claiming(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A well-formed PNG header declaring any size, followed by one tiny IDAT."""
    return (
        PNG_SIGNATURE
        + png_ihdr(width, height, bit_depth)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 40_000) -> bytes:
    """A *complete* 1-bit side×side PNG (all black): 200 MB of scanlines deflate to ~200 KB.

    Built row by row with a streaming compressor, so making it costs no memory either; decoding
    it would cost 1.6 GB as 8-bit grey.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed 1-bit pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (
        PNG_SIGNATURE
        + png_ihdr(side, side, bit_depth=1)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is rewritten to claim width×height."""
    data = bytearray(encode(xray(64, 64), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF whose first IFD declares width×height and a few bytes of strip."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x80" * 16


def bmp_claiming(width: int, height: int) -> bytes:
    """A BMP file + info header declaring width×height 8-bit, with no pixel array behind it."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + 1024, 0, 0, 14 + len(info) + 1024) + info


def animated(fmt: str, frames: int = 3) -> bytes:
    images = [Image.fromarray(xray(128, 128, seed=i)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=100, loop=0)


def j2k_codestream(pixels: np.ndarray) -> bytes:
    """A lossless JPEG 2000 codestream of 16-bit grey pixels (what JPEG 2000 DICOM encapsulates)."""
    return encode(
        Image.fromarray(pixels.astype(np.uint16)), "JPEG2000", irreversible=False, no_jp2=True
    )


def exif_rotated_jpeg() -> bytes:
    """A portrait X-ray stored landscape, with EXIF Orientation = 6 (rotate 90° clockwise)."""
    img = Image.fromarray(xray(200, 300)).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(img, "JPEG", exif=exif.tobytes())


# ---------------------------------------------------------------------------- the two sets


def hostile_cases() -> list[Case]:
    """Files the API must refuse with a 4xx naming the problem."""
    good_png, good_jpeg = encode(xray(), "PNG"), encode(xray(), "JPEG")
    twelve_bit = xray(128, 128).astype(np.uint16) * 16
    return [
        Case("empty.png", b"", 415, "empty"),
        Case("text-named.png", b"patient list\nname,age\nJane,54\n", 415, "text"),
        Case(
            "html-named.png", b"<!DOCTYPE html><html><script>alert(1)</script></html>", 415, "html"
        ),
        Case("svg-named.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "svg"),
        Case("pdf-named.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n", 415, "pdf"),
        Case("random-bytes.png", np.random.default_rng(7).bytes(4096), 415, "unknown"),
        Case("truncated.png", good_png[: len(good_png) // 2], 422, "PNG"),
        Case("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], 422, "JPEG"),
        Case("signature-only.png", PNG_SIGNATURE, 422, "PNG"),
        Case("header-only.png", PNG_SIGNATURE + png_ihdr(256, 256), 422, "PNG"),
        Case("claims-65535x65535.png", png_claiming(65535, 65535), 413, "65535×65535"),
        Case("zero-width.png", png_claiming(0, 256), 422, "PNG"),
        Case("bomb-1bit-40000x40000.png", png_bomb(40_000), 413, "40000×40000"),
        Case("claims-65500x65500.jpg", jpeg_claiming(65500, 65500), 413, "65500×65500"),
        Case("claims-100000x100000.tif", tiff_claiming(100_000, 100_000), 413, "100000×100000"),
        Case("claims-60000x60000.bmp", bmp_claiming(60_000, 60_000), 413, "60000×60000"),
        Case("1x1.png", encode(np.full((1, 1), 128, np.uint8), "PNG"), 422, "1×1"),
        Case("1x1.jpg", encode(np.full((1, 1), 128, np.uint8), "JPEG"), 422, "1×1"),
        Case("1x1.bmp", encode(np.full((1, 1), 128, np.uint8), "BMP"), 422, "1×1"),
        Case("animated.gif", animated("GIF"), 415, "gif"),
        Case("animated.png", animated("PNG"), 415, "animated"),
        Case("animated.webp", animated("WEBP"), 415, "animated"),
        Case("no-pixel-data.dcm", dicom(None), 422, "no pixel data"),
        Case(
            "jpeg2000-junk.dcm",
            dicom(twelve_bit, syntax=JPEG2000Lossless, frame=b"\xff\x4f\xff\x51" + b"\x00" * 60),
            422,
            "1.2.840.10008.1.2.4.90) is corrupt",
        ),
        Case(
            "htj2k-junk.dcm",
            dicom(twelve_bit, syntax=HTJ2KLossless, frame=b"\xff\xd8\xff\xf7" + b"\x00" * 60),
            415,
            "1.2.840.10008.1.2.4.201",
        ),
        Case(
            "rle-junk.dcm",
            dicom(twelve_bit, syntax=RLELossless, frame=b"\x00" * 64),
            422,
            "1.2.840.10008.1.2.5) is corrupt",
        ),
        Case("truncated-pixels.dcm", dicom(twelve_bit, truncate_to=1000), 422, "DICOM"),
        Case("dicm-magic-only.dcm", b"\x00" * 128 + b"DICM" + b"\xff" * 64, 422, "DICOM"),
    ]


def unusual_cases() -> list[Case]:
    """Valid images in awkward encodings: the API must accept every one."""
    base = xray(256, 256, seed=3)
    grey = Image.fromarray(base)
    rgb = Image.merge("RGB", [grey] * 3)
    rgba = rgb.copy()
    rgba.putalpha(255)
    wide, tall = xray(3000, 120, seed=4), xray(120, 3000, seed=5)
    twelve_bit = base.astype(np.uint16) * 16
    return [
        Case("cmyk.jpg", encode(rgb.convert("CMYK"), "JPEG"), 200),
        Case("progressive.jpg", encode(grey, "JPEG", progressive=True), 200),
        Case("grey-16bit.png", encode(Image.fromarray(base.astype(np.uint16) * 257), "PNG"), 200),
        Case("rgba.png", encode(rgba, "PNG"), 200),
        Case("grey-alpha.png", encode(grey.convert("LA"), "PNG"), 200),
        Case("palette.png", encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), 200),
        Case("1bit.png", encode(grey.convert("1"), "PNG"), 200),
        Case("grey.tif", encode(grey, "TIFF", compression="tiff_lzw"), 200),
        Case("grey-16bit.tif", encode(Image.fromarray(base.astype(np.uint16) * 257), "TIFF"), 200),
        Case("rgb.webp", encode(rgb, "WEBP", quality=90), 200),
        Case("lossless.webp", encode(grey, "WEBP", lossless=True), 200),
        Case("rgb.bmp", encode(rgb, "BMP"), 200),
        Case("grey.bmp", encode(grey, "BMP"), 200),
        Case("wide-3000x120.png", encode(wide, "PNG"), 200),
        Case("tall-120x3000.png", encode(tall, "PNG"), 200),
        Case("exif-rotated.jpg", exif_rotated_jpeg(), 200),
        Case("monochrome1.dcm", dicom(twelve_bit, photometric="MONOCHROME1"), 200),
        Case("monochrome2-12bit.dcm", dicom(twelve_bit), 200),
        Case(
            "jpeg2000.dcm",
            dicom(twelve_bit, syntax=JPEG2000Lossless, frame=j2k_codestream(twelve_bit)),
            200,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the corpus into")
    args = parser.parse_args(argv)
    manifest = {}
    for group, cases in (("hostile", hostile_cases()), ("unusual", unusual_cases())):
        (args.out / group).mkdir(parents=True, exist_ok=True)
        for case in cases:
            (args.out / group / case.name).write_bytes(case.data)
            manifest[f"{group}/{case.name}"] = {
                k: v for k, v in asdict(case).items() if k != "data"
            }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    print(f"wrote {len(manifest)} files to {args.out}")


if __name__ == "__main__":
    main()
