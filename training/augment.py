"""Site augmentation: make every training image look as if another hospital had taken it.

Each source has its own look (NIH here is 64² upsampled, JSRT digitised film, COVID figures are
JPEG crops with arrows and text). A CNN that sees them side by side learns the look instead of the
patient. Every change below is applied to EVERY source with the same probabilities, so no cue
(blur, contrast, borders, markers) stays tied to one site. No left-right flip: the heart is on the
left, and a flipped film is not a film any hospital sends.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

MARKERS = ("L", "R", "AP", "PA", "PORTABLE", "ERECT", "SUPINE")


def _resolution_loss(img: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Down to a random side (¼–1 of the input), back up: every source gets to be blurry."""
    side = int(rng.integers(max(16, size // 4), size + 1))
    resample = Image.Resampling.BILINEAR if rng.random() < 0.5 else Image.Resampling.BOX
    return img.resize((side, side), resample).resize((size, size), Image.Resampling.BILINEAR)


def _geometry(img: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Small rotation (±7°), zoom (0.88–1.12) and shift (±6 %), filled with black."""
    angle = float(rng.uniform(-7, 7))
    zoom = float(np.exp(rng.uniform(np.log(0.88), np.log(1.12))))
    dx, dy = rng.uniform(-0.06, 0.06, 2) * size
    a = np.deg2rad(angle)
    cos, sin = np.cos(a) / zoom, np.sin(a) / zoom
    c = size / 2
    # Inverse affine (output → input) about the centre.
    coeffs = (
        cos,
        sin,
        c - cos * (c + dx) - sin * (c + dy),
        -sin,
        cos,
        c + sin * (c + dx) - cos * (c + dy),
    )
    return img.transform(
        (size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=0
    )


def _artefacts(img: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """Collimation borders (black or white bands) and burnt-in text markers."""
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.3:
        level = 0 if rng.random() < 0.7 else 255
        for side in np.flatnonzero(rng.random(4) < 0.5):
            w = int(rng.uniform(0.02, 0.12) * size)
            box = [
                (0, 0, w, size),
                (size - w, 0, size, size),
                (0, 0, size, w),
                (0, size - w, size, size),
            ]
            draw.rectangle(box[side], fill=level)
    if rng.random() < 0.3:
        text = str(rng.choice(MARKERS))
        x, y = rng.integers(0, size * 3 // 4), rng.integers(0, size * 7 // 8)
        draw.text((int(x), int(y)), text, fill=int(rng.integers(200, 256)))
    return img


def _tone(a: npt.NDArray[np.float32], rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Window (level/width), gamma and brightness: what different detectors and LUTs do."""
    lo = rng.uniform(0.0, 0.12) * 255
    hi = rng.uniform(0.85, 1.0) * 255
    a = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    a = a**gamma
    a = a * rng.uniform(0.85, 1.1) + rng.uniform(-0.06, 0.06)
    return np.clip(a, 0.0, 1.0) * 255.0


def augment_image(
    image: npt.NDArray[np.uint8], rng: np.random.Generator, strength: float = 1.0
) -> npt.NDArray[np.float32]:
    """One (S, S) uint8 image → an augmented (S, S) float32 in 0–255."""
    size = image.shape[0]
    img = Image.fromarray(image)
    if rng.random() < 0.8 * strength:
        img = _resolution_loss(img, rng, size)
    if rng.random() < 0.8 * strength:
        img = _geometry(img, rng, size)
    if rng.random() < strength:
        img = _artefacts(img, rng, size)
    r = rng.random()
    if r < 0.25 * strength:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    elif r < 0.45 * strength:
        img = img.filter(
            ImageFilter.UnsharpMask(
                radius=float(rng.uniform(1, 2.5)), percent=int(rng.integers(50, 200)), threshold=0
            )
        )
    a = np.asarray(img, np.float32)
    if rng.random() < 0.8 * strength:
        a = _tone(a, rng)
    if rng.random() < 0.5 * strength:
        a = a + rng.normal(0.0, rng.uniform(1.0, 8.0), a.shape).astype(np.float32)
    return np.clip(a, 0.0, 255.0).astype(np.float32)


def augment_batch(
    images: npt.NDArray[np.uint8], rng: np.random.Generator, strength: float = 1.0
) -> npt.NDArray[np.float32]:
    """(N, S, S) uint8 → (N, S, S, 1) float32, each image changed independently."""
    return np.stack([augment_image(x, rng, strength) for x in images])[..., None]
