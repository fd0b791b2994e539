"""Decode records into one uint8 array through cxr/imaging.py (the serving preprocessing)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from cxr.errors import ImageError
from cxr.imaging import PreprocessParams, preprocess_bytes
from training.data import DataError, Record, report_skipped

logger = logging.getLogger(__name__)


def load_image(record: Record, params: PreprocessParams) -> npt.NDArray[np.uint8]:
    """One file → (S, S) uint8, exactly the tensor the service builds (values are whole numbers)."""
    return preprocess_bytes(record.path.read_bytes(), params)[:, :, 0].astype(np.uint8)


def load_images(
    records: list[Record], params: PreprocessParams, workers: int = 4
) -> tuple[npt.NDArray[np.uint8], list[Record]]:
    """Decode all records in parallel; unreadable ones are skipped and reported."""

    def one(record: Record) -> npt.NDArray[np.uint8] | str:
        try:
            return load_image(record, params)
        except (ImageError, OSError) as exc:
            return f"{record.path.name}: {getattr(exc, 'message', exc)}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(one, records))
    kept = [(r, img) for r, img in zip(records, results, strict=True) if not isinstance(img, str)]
    report_skipped([x for x in results if isinstance(x, str)], "image decoding")
    if not kept:
        raise DataError(f"none of the {len(records)} images could be decoded")
    images = np.stack([img for _, img in kept])
    return images, [r for r, _ in kept]
