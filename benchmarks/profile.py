"""Profile mode: where a request's CPU goes, stage by stage, against the in-process cost.

The stages are timed by `python -m service.profile` in a subprocess (the service profiles its own
code; benchmarks never import the service); this module adds the measured ceiling and the
server under load, and renders the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.payloads import Body

REPO = Path(__file__).resolve().parent.parent


def profile_stages(model_dir: Path, png: bytes, body: Body, n: int = 60) -> dict[str, Any]:
    """CPU ms per request by stage for one upload (see service/profile.py)."""
    with tempfile.TemporaryDirectory(prefix="cxr-profile-") as folder:
        png_path, body_path = Path(folder) / "image.png", Path(folder) / "body"
        png_path.write_bytes(png)
        body_path.write_bytes(body.content)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "service.profile",
                "--model-dir",
                str(model_dir),
                "--png",
                str(png_path),
                "--body",
                str(body_path),
                "--content-type",
                body.content_type,
                "-n",
                str(n),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=900,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def attach_measured(profile: dict[str, Any], out: dict[str, Any], image: str) -> None:
    """Add the in-process ceiling's and the running server's CPU per image for comparison."""
    profile["ceiling_cpu_ms"] = out["ceiling"][image]["cpu_ms"]
    for row in out["rows"]:
        if row["scenario"] == "service" and row["image"] == image and row["mode"] == "closed":
            level = int(row["level"])
            profile[f"server_cpu_ms_c{level}"] = row["server_cpu_ms"]
            profile[f"client_cpu_ms_c{level}"] = row["client_cpu_ms"]
            stage_sum = (
                profile["stage_sum_ms"]
                - profile["stages_cpu_ms"]["metrics"]
                + (profile["stages_cpu_ms"]["metrics_multiprocess"])
            )
            profile[f"unattributed_ms_c{level}"] = row["server_cpu_ms"] - stage_sum
    profile["mean_queue_wait_ms"] = {
        f"c{int(r['level'])}": r.get("mean_queue_wait_ms")
        for r in out["rows"]
        if r["scenario"] == "service" and r["image"] == image and r["mode"] == "closed"
    }


def markdown(profile: dict[str, Any]) -> str:
    """The profile as a Markdown table."""
    s = profile["stages_cpu_ms"]
    lines = ["| stage | CPU ms per request |", "|---|---:|"]
    for name, ms in s.items():
        lines.append(f"| {name.replace('_', ' ')} | {ms:.3f} |")
    lines.append(f"| **sum (plain metrics)** | **{profile['stage_sum_ms']:.2f}** |")
    lines.append(
        f"| whole app in-process (ASGI, no socket) | {profile['asgi_app_in_process_ms']:.2f} |"
    )
    if "ceiling_cpu_ms" in profile:
        lines.append(
            f"| in-process ceiling (decode + resize + ORT, best config) | "
            f"{profile['ceiling_cpu_ms']:.2f} |"
        )
    for key in sorted(k for k in profile if k.startswith("server_cpu_ms_c")):
        c = key.rsplit("_c", 1)[1]
        lines.append(
            f"| server measured under load, c={c} (+ load generator) | "
            f"{profile[key]:.2f} (+ {profile[f'client_cpu_ms_c{c}']:.2f}) |"
        )
        lines.append(
            f"| unattributed at c={c} (event loop, sockets, hand-offs, contention) | "
            f"{profile[f'unattributed_ms_c{c}']:.2f} |"
        )
    waits = profile.get("mean_queue_wait_ms") or {}
    if waits:
        lines.append(
            "| batch wait (wall ms, not CPU), mean | "
            + ", ".join(f"{k}: {v:.2f}" for k, v in waits.items() if v is not None)
            + " |"
        )
    return "\n".join(lines) + "\n"
