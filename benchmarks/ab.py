"""`python -m benchmarks.ab`: the in-process ceiling and two servers, measured in turns (ceiling
→ A → B, several rounds, at each concurrency) so that each ratio compares numbers taken seconds
apart. On a shared machine whose load moves by 2–3× within a minute this is the only fair
comparison; the full suite measures its levels minutes apart. → results/bench/ab.json and ab.md.

A and B are service configurations (`--a WORKERS=1 --b ''`), or B is the BentoML peer
(`--peer`: benchmarks/peer_bentoml.py, the same model and preprocessing behind BentoML's adaptive
batching, run with the interpreter of `.venv-peer`, made by `make peer-venv`).
"""

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
from benchmarks.procs import ServerProcess, start_server
from benchmarks.scenarios import run_level
from cxr.card import Preprocessing
from tests.support.paths import REPO
from tests.support.procs import free_port

logger = logging.getLogger("benchmarks.ab")
PEER_PYTHON = Path(".venv-peer/bin/python")


def _env(items: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in items.split(",") if item)


def start_peer(model_dir: Path, log_dir: Path, python: Path = PEER_PYTHON) -> ServerProcess:
    """The BentoML peer on a free loopback port, once its /readyz answers."""
    if not python.exists():
        raise SystemExit(f"{python} not found: run `make peer-venv` first")
    port = free_port()
    server = ServerProcess(
        "bentoml",
        log=log_dir / "peer-bentoml.log",
        name="BentoML peer",
        port=port,
        env={"MODEL_DIR": str(model_dir.resolve()), "BENTOML_DO_NOT_TRACK": "True"},
        command=[
            str(python),
            "-m",
            "bentoml",
            "serve",
            "benchmarks.peer_bentoml:CxrPeer",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    )
    return server.start(timeout_s=120, poll_s=0.05)


def main(argv: list[str] | None = None) -> int:
    """Alternate ceiling, A and B; print the per-round ratios and their medians."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--a", default="WORKERS=1", help="service A environment, KEY=V,KEY=V")
    p.add_argument(
        "--a-tree",
        type=Path,
        help="run service A from this checkout (e.g. `git worktree add /tmp/old HEAD~3`)",
    )
    p.add_argument("--b", default="", help="service B environment (default: the defaults)")
    p.add_argument("--peer", action="store_true", help="B is the BentoML peer, not a service")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[32])
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
    logs = args.out / "logs"
    names = {
        "A": (args.a or "defaults") + (f" @ {args.a_tree}" if args.a_tree else ""),
        "B": "BentoML peer" if args.peer else args.b or "defaults",
    }
    servers: dict[str, tuple[ServerProcess, str]] = {}
    rounds: list[dict[str, Any]] = []
    try:
        servers["A"] = (
            start_server(
                "ab-A",
                "service",
                {**base, **_env(args.a)},
                "/readyz",
                logs,
                tree=args.a_tree or REPO,
            ),
            "/v1/predict",
        )
        if args.peer:
            servers["B"] = (start_peer(args.model_dir, logs), "/predict")
        else:
            servers["B"] = (
                start_server("ab-B", "service", {**base, **_env(args.b)}, "/readyz", logs),
                "/v1/predict",
            )
        for i in range(args.rounds):
            top = ceiling.measure_ceiling(pngs, 48, params, model_path, configs)
            for c in args.concurrency:
                entry: dict[str, Any] = {
                    "round": i,
                    "concurrency": c,
                    "ceiling": top["images_per_s"],
                    "load_avg": os.getloadavg()[0],
                }
                for name, (server, path) in servers.items():
                    row = run_level(
                        server,
                        path,
                        bodies,
                        scenario=name,
                        image="1024px PNG",
                        concurrency=c,
                        seconds=args.seconds,
                        metrics=path == "/v1/predict",
                    )
                    keep = ("throughput", "p50_ms", "p99_ms", "server_cpu_ms", "client_cpu_ms")
                    entry[name] = {k: row[k] for k in (*keep, "errors")}
                    entry[name]["ratio"] = row["throughput"] / top["images_per_s"]
                entry["b_over_a"] = entry["B"]["throughput"] / entry["A"]["throughput"]
                rounds.append(entry)
                logger.info(
                    "round %d c=%d (load %.1f): ceiling %.1f/s; A %.2f×, B %.2f×",
                    i,
                    c,
                    entry["load_avg"],
                    top["images_per_s"],
                    entry["A"]["ratio"],
                    entry["B"]["ratio"],
                )
    finally:
        for server, _ in servers.values():
            server.stop()
    table = _table(args, names, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.json").write_text(
        json.dumps({"a": names["A"], "b": names["B"], "rounds": rounds}, indent=2, default=float)
        + "\n"
    )
    (args.out / "ab.md").write_text(table)
    print(table)
    return 0


def _table(args: argparse.Namespace, names: dict[str, str], rounds: list[dict[str, Any]]) -> str:
    lines = [
        (
            f"A = `{names['A']}`, B = `{names['B']}`, 1024-px PNG multipart, "
            f"{args.seconds:g} s per turn"
        ),
        "",
        (
            "| round | c | load avg | ceiling img/s | A img/s | A × ceiling | A p99 ms | "
            "A CPU ms/img | B img/s | B × ceiling | B p99 ms | B CPU ms/img | A ÷ B |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        a, b = r["A"], r["B"]
        lines.append(
            f"| {r['round']} | {r['concurrency']} | {r['load_avg']:.1f} | {r['ceiling']:.1f} | "
            f"{a['throughput']:.1f} | {a['ratio']:.2f} | {a['p99_ms']:.1f} | "
            f"{a['server_cpu_ms']:.1f} + {a['client_cpu_ms']:.1f} | "
            f"{b['throughput']:.1f} | {b['ratio']:.2f} | {b['p99_ms']:.1f} | "
            f"{b['server_cpu_ms']:.1f} + {b['client_cpu_ms']:.1f} | {1 / r['b_over_a']:.2f} |"
        )
    lines.append("")
    for c in args.concurrency:
        at = [r for r in rounds if r["concurrency"] == c]
        med = {n: statistics.median(r[n]["ratio"] for r in at) for n in ("A", "B")}
        a_over_b = statistics.median(1 / r["b_over_a"] for r in at)
        lines.append(
            f"c={c}: median × ceiling A {med['A']:.2f}, B {med['B']:.2f}; "
            f"median A ÷ B {a_over_b:.2f}."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
