"""`python -m benchmarks.tune`: MAX_WAIT_MS × MAX_BATCH_SIZE at c = 1, 8, 32 (1024-px PNG
uploads and OIP v2 tensors) → results/bench/tune.json and tune.md. Short levels; the machine is
shared, so read the table as ratios measured minutes apart, not absolute numbers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.images import cached_pngs
from benchmarks.payloads import multipart_body, oip_tensor_body
from benchmarks.procs import start_server
from benchmarks.scenarios import run_level
from cxr.card import Preprocessing
from cxr.imaging import preprocess_bytes

logger = logging.getLogger("benchmarks.tune")


def main(argv: list[str] | None = None) -> int:
    """Sweep the batching settings; print and save the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--wait-ms", default="0,2,5,10", help="MAX_WAIT_MS values")
    p.add_argument("--batch", default="16", help="MAX_BATCH_SIZE values")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    card = json.loads((args.model_dir / "model.json").read_text())
    params = Preprocessing.model_validate(card["preprocessing"]).params()
    big = [multipart_body(b) for b in cached_pngs(1024, 8, args.out / "cache")]
    small = cached_pngs(params.size, 32, args.out / "cache")
    tensors = [oip_tensor_body(preprocess_bytes(b, params)[None]) for b in small]
    v2 = f"/v2/models/{card['name']}/infer"
    rows: list[dict[str, Any]] = []
    for batch in args.batch.split(","):
        for wait in args.wait_ms.split(","):
            env = {
                "MODEL_DIR": str(args.model_dir.resolve()),
                "MAX_WAIT_MS": wait,
                "MAX_BATCH_SIZE": batch,
            }
            server = start_server(
                f"tune-{wait}-{batch}", "service", env, "/readyz", args.out / "logs"
            )
            try:
                for image, path, bodies in (
                    ("1024px PNG", "/v1/predict", big),
                    (f"{params.size}px tensor", v2, tensors),
                ):
                    for c in (1, 8, 32):
                        row = run_level(
                            server,
                            path,
                            bodies,
                            scenario="service",
                            image=image,
                            concurrency=c,
                            seconds=args.seconds,
                        )
                        row.update(max_wait_ms=float(wait), max_batch_size=int(batch))
                        rows.append(row)
                        logger.info(
                            "wait %s batch %s %-12s c=%-2d %7.1f/s p50 %6.1f p99 %6.1f batch %.2f",
                            wait,
                            batch,
                            image,
                            c,
                            row["throughput"],
                            row["p50_ms"],
                            row["p99_ms"],
                            row.get("mean_batch") or 0,
                        )
            finally:
                server.stop()
    lines = [
        (
            "| MAX_WAIT_MS | MAX_BATCH_SIZE | input | c | images/s | p50 ms | p99 ms | "
            "mean batch | CPU ms/img server |"
        ),
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['max_wait_ms']:g} | {r['max_batch_size']} | {r['image']} | "
            f"{r['level']:g} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r.get('mean_batch') or 0:.2f} | "
            f"{r['server_cpu_ms']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.json").write_text(
        json.dumps(
            {"load_avg": os.getloadavg(), "seconds": args.seconds, "rows": rows},
            indent=2,
            default=float,
        )
        + "\n"
    )
    (args.out / "tune.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
