"""`python -m benchmarks.ab`: the in-process ceiling and two service configurations, measured in
turns (ceiling → A → B, several rounds) so that each ratio compares numbers taken seconds apart.
On a shared machine whose load moves by 2–3× within a minute this is the only fair comparison;
the full suite measures its levels minutes apart. → results/bench/ab.json and ab.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks import ceiling
from benchmarks.images import cached_pngs
from benchmarks.payloads import multipart_body
from benchmarks.procs import start_server
from benchmarks.scenarios import run_level
from cxr.card import Preprocessing

logger = logging.getLogger("benchmarks.ab")


def _env(items: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items.split(",") if item)


def main(argv: list[str] | None = None) -> int:
    """Alternate ceiling, A and B; print the per-round ratios and their medians."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--a", default="WORKERS=1", help="service A environment, KEY=V,KEY=V")
    p.add_argument("--b", default="", help="service B environment (default: the defaults)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    card = json.loads((args.model_dir / "model.json").read_text())
    params = Preprocessing.model_validate(card["preprocessing"]).params()
    pngs = cached_pngs(1024, 8, args.out / "cache")
    bodies = [multipart_body(b) for b in pngs]
    model_path = args.model_dir / "model.onnx"
    configs = [ceiling.Config(2, 1, 16), ceiling.Config(1, 1, 1, processes=2)]
    base = {"MODEL_DIR": str(args.model_dir.resolve())}
    servers = {
        name: start_server(
            f"ab-{name}", "service", {**base, **_env(env)}, "/readyz", args.out / "logs"
        )
        for name, env in (("A", args.a), ("B", args.b))
    }
    rounds: list[dict[str, Any]] = []
    try:
        for i in range(args.rounds):
            top = ceiling.measure_ceiling(pngs, 48, params, model_path, configs)
            entry: dict[str, Any] = {
                "round": i,
                "ceiling": top["images_per_s"],
                "load_avg": os.getloadavg()[0],
            }
            for name, server in servers.items():
                row = run_level(
                    server,
                    "/v1/predict",
                    bodies,
                    scenario=name,
                    image="1024px PNG",
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                )
                entry[name] = {
                    k: row[k]
                    for k in (
                        "throughput",
                        "p50_ms",
                        "p99_ms",
                        "server_cpu_ms",
                        "client_cpu_ms",
                        "errors",
                    )
                }
                entry[name]["ratio"] = row["throughput"] / top["images_per_s"]
            rounds.append(entry)
            logger.info(
                "round %d (load %.1f): ceiling %.1f/s; A %.2f×, B %.2f×",
                i,
                entry["load_avg"],
                top["images_per_s"],
                entry["A"]["ratio"],
                entry["B"]["ratio"],
            )
    finally:
        for server in servers.values():
            server.stop()
    lines = [
        (
            f"A = `{args.a or 'defaults'}`, B = `{args.b or 'defaults'}`, 1024-px PNG multipart, "
            f"c={args.concurrency}, {args.seconds:g} s per turn"
        ),
        "",
        (
            "| round | load avg | ceiling img/s | A img/s | A × ceiling | A CPU ms/img | "
            "B img/s | B × ceiling | B CPU ms/img |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['round']} | {r['load_avg']:.1f} | {r['ceiling']:.1f} | "
            f"{r['A']['throughput']:.1f} | {r['A']['ratio']:.2f} | "
            f"{r['A']['server_cpu_ms']:.1f} + {r['A']['client_cpu_ms']:.1f} | "
            f"{r['B']['throughput']:.1f} | {r['B']['ratio']:.2f} | "
            f"{r['B']['server_cpu_ms']:.1f} + {r['B']['client_cpu_ms']:.1f} |"
        )
    med = {n: statistics.median(r[n]["ratio"] for r in rounds) for n in ("A", "B")}
    lines.append(f"\nMedian × ceiling: A {med['A']:.2f}, B {med['B']:.2f}.")
    table = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.json").write_text(
        json.dumps(
            {"a": args.a, "b": args.b, "rounds": rounds, "median_ratio": med},
            indent=2,
            default=float,
        )
        + "\n"
    )
    (args.out / "ab.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
