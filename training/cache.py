"""Decoded-tensor cache: decode a dataset through the serving preprocessing once per size.

The key covers every file's path, size and mtime plus the preprocessing parameters, so a changed
image or a changed preprocessing never reads stale tensors. Files live in the run tree
(`runs/cache/` by default, gitignored): they are derived data, never committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cxr.imaging import PREPROCESSING_ID
from training.data import Record
from training.loading import load_images

logger = logging.getLogger(__name__)


def cache_key(records: list[Record], params_card: dict) -> str:
    """sha256 over the preprocessing parameters and each file's path, size and mtime."""
    h = hashlib.sha256(json.dumps(params_card, sort_keys=True).encode())
    for r in records:
        st = r.path.stat()
        h.update(f"{r.path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_images_cached(
    records: list[Record], params, workers: int, cache_dir: str | Path | None
) -> tuple[npt.NDArray[np.uint8], list[Record]]:
    """load_images, memoised on disk; records that fail to decode are dropped as before."""
    if not cache_dir:
        return load_images(records, params, workers)
    cache_dir = Path(cache_dir)
    key = cache_key(records, {"id": PREPROCESSING_ID, **asdict(params)})
    path = cache_dir / f"{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            keep = z["keep"]
            images = z["images"]
        logger.info("decoded tensors from cache %s (%d images)", path, len(images))
        return images, [r for r, k in zip(records, keep, strict=True) if k]
    images, kept = load_images(records, params, workers)
    kept_paths = {r.path for r in kept}
    keep = np.array([r.path in kept_paths for r in records], bool)
    tmp = path.with_suffix(".tmp.npz")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, images=images, keep=keep)
        tmp.replace(path)
    except OSError as exc:  # a read-only image or a full disk: training goes on uncached
        logger.warning("not caching decoded images in %s: %s", cache_dir, exc)
        return images, kept
    logger.info("cached %d decoded images in %s", len(images), path)
    return images, kept
