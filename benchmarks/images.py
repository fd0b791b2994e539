"""Phantom PNGs cached on disk (a 1024-pixel phantom takes ~0.5 s to draw; results/ is ignored)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.payloads import phantom_pngs


def cached_pngs(size: int, count: int, cache: Path, seed: int = 7) -> list[bytes]:
    """`count` phantom PNGs of `size` pixels, drawn once and then read back from `cache`."""
    folder = cache / f"phantom-{size}-seed{seed}"
    files = [folder / f"{i:03d}.png" for i in range(count)]
    if all(f.is_file() for f in files):
        return [f.read_bytes() for f in files]
    folder.mkdir(parents=True, exist_ok=True)
    pngs = phantom_pngs(size, count, seed)
    for f, data in zip(files, pngs, strict=True):
        f.write_bytes(data)
    return pngs
