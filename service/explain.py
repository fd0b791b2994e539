"""Occlusion sensitivity: grey out one patch at a time and see how the predictions move.

Pure numpy/Pillow; the variants run as one batch through the shared batcher (service/engine.py).
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image

OVERLAY_SIZE = 256


def occlusion_batch(x: npt.NDArray[np.float32], grid: int) -> npt.NDArray[np.float32]:
    """(grid² + 1, S, S, 1): row 0 the image, row 1 + r·grid + c with patch (r, c) set to its mean.

    The fill is the image's own mean grey, so an occluded patch carries no structure but no
    out-of-distribution black hole either.
    """
    size = x.shape[0]
    if size % grid:
        raise ValueError(f"image size {size} is not divisible by grid {grid}")
    patch = size // grid
    fill = float(x.mean())
    batch = np.repeat(x[None], grid * grid + 1, axis=0)
    for r in range(grid):
        for c in range(grid):
            batch[1 + r * grid + c, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = fill
    return batch


def sensitivity(values: npt.NDArray[np.float32], grid: int) -> npt.NDArray[np.float64]:
    """Per-patch change (occluded − original) of one output as a (grid, grid) array."""
    flat = np.asarray(values, dtype=np.float64).reshape(len(values), -1)[:, 0]
    return (flat[1:] - flat[0]).reshape(grid, grid)


def legend(delta_age: npt.NDArray[np.float64], delta_p: npt.NDArray[np.float64]) -> dict[str, str]:
    """How to read the two overlays, with the size of the strongest colour in each."""
    how = (
        "each of the {n}×{n} patches was replaced by the image's mean grey in turn; red = "
        "hiding it raised {what}, blue = lowered it; the strongest colour is a change of {peak}. "
        "Colour marks where the prediction depends on the image, not findings"
    )
    n = delta_age.shape[0]
    return {
        "age": how.format(
            n=n, what="the predicted age", peak=f"{float(np.abs(delta_age).max()):.2f} years"
        ),
        "p_male": how.format(n=n, what="P(male)", peak=f"{float(np.abs(delta_p).max()):.4f}"),
    }


def overlay_png(gray: npt.NDArray[np.float32], delta: npt.NDArray[np.float64]) -> bytes:
    """Heat map over the preprocessed image: red where occlusion raised the output, blue where it
    lowered it, opacity ∝ |change| relative to the largest change."""
    base = Image.fromarray(
        np.clip(gray.reshape(gray.shape[0], gray.shape[1]), 0, 255).astype(np.uint8), "L"
    ).resize((OVERLAY_SIZE, OVERLAY_SIZE), Image.Resampling.BILINEAR)
    peak = float(np.abs(delta).max())
    norm = delta / peak if peak > 0 else np.zeros_like(delta)
    heat = np.zeros((*delta.shape, 4), dtype=np.uint8)
    heat[..., 0] = np.where(norm > 0, 255, 0)
    heat[..., 2] = np.where(norm < 0, 255, 0)
    heat[..., 3] = (np.abs(norm) * 160).astype(np.uint8)
    layer = Image.fromarray(heat, "RGBA").resize(
        (OVERLAY_SIZE, OVERLAY_SIZE), Image.Resampling.NEAREST
    )
    out = Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
