"""The GPU serve requirements pin exactly what serve.txt pins, with onnxruntime-gpu for
onnxruntime."""

from __future__ import annotations

import re
from pathlib import Path

REQ = Path(__file__).resolve().parents[2] / "requirements"


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (REQ / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
        assert match, f"{name}: {line!r} is not pinned as name==version"
        out[match.group(1).lower()] = match.group(3)
    return out


def test_gpu_variant_matches_cpu_pins() -> None:
    cpu, gpu = pins("serve.txt"), pins("serve-gpu.txt")
    assert "onnxruntime" not in gpu, "onnxruntime and onnxruntime-gpu cannot share one environment"
    assert gpu.pop("onnxruntime-gpu") == cpu.pop("onnxruntime")
    cuda = {k for k in gpu if k.startswith("nvidia-")}
    assert cuda >= {"nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"}
    assert {k: v for k, v in gpu.items() if k not in cuda} == cpu
