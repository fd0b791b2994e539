"""Generated inputs that are not chest X-rays: colour photographs, text pages, noise, blanks."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.support.images import encode

WORDS = (
    "patient",
    "report",
    "invoice",
    "total",
    "date",
    "signature",
    "radiology",
    "the",
    "and",
    "of",
    "meeting",
    "agenda",
    "budget",
    "summary",
    "page",
    "notes",
)


def colour_photograph(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A landscape-like colour scene: sky gradient, hills, a sun, coloured objects, sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y = np.linspace(0, 1, h)[:, None, None]
    top, bottom = rng.uniform(60, 255, 3), rng.uniform(0, 200, 3)
    img = np.broadcast_to(top * (1 - y) + bottom * y, (h, w, 3)).copy()
    pil = Image.fromarray(img.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(4, 9)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(20, w // 3))
        if rng.random() < 0.5:
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
        else:
            draw.rectangle([x0 - r, y0 - r // 2, x0 + r, y0 + r // 2], fill=colour)
    pil = pil.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(pil, np.float32) + rng.normal(0, 4, (h, w, 3))
    return encode(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"), "JPEG")


def text_page(seed: int, size: tuple[int, int] = (600, 800)) -> bytes:
    """A rendered page of black text on white (a scanned letter or a screenshot of a report)."""
    rng = np.random.default_rng(seed)
    pil = Image.new("L", size, 255)
    draw = ImageDraw.Draw(pil)
    font = ImageFont.load_default(size=int(rng.integers(14, 28)))
    y = 30
    while y < size[1] - 40:
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 9))))
        draw.text((30, y), line, fill=int(rng.integers(0, 60)), font=font)
        y += int(rng.integers(24, 40))
    return encode(pil)


def noise(seed: int, size: int = 256, colour: bool = False) -> bytes:
    """Uniform random pixels, grey or RGB."""
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if colour else (size, size)
    return encode(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)))


def blank(level: int, size: tuple[int, int] = (300, 300)) -> bytes:
    """A uniform image of one grey level."""
    return encode(Image.new("L", size, level))


def strip(seed: int) -> bytes:
    """A band across a synthetic chest, 4:1: anatomy, but not a whole chest film."""
    from training.phantom import generate_phantom

    return encode(Image.fromarray(generate_phantom(seed, 256).image[96:160]))
