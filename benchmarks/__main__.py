"""`python -m benchmarks [--quick]`: the service under HTTP load against its baselines → results/.

Order: in-process ceiling → the service (start-up time, closed and open loop, v2 tensors, RSS
soak) → the service with MAX_BATCH_SIZE=1 → the INT8 model if built → the seed-style Flask + Keras
server → the ceiling once more (the better measurement counts). Everything runs on this machine,
on loopback, with the same model and the same images; results are ratios to the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import ceiling, report
from benchmarks import profile as stage_profile
from benchmarks.images import cached_pngs
from benchmarks.load import burst_then_single
from benchmarks.payloads import multipart_body, oip_tensor_body, raw_body
from benchmarks.procs import ServerProcess, start_server
from benchmarks.scenarios import run_level, soak
from cxr.card import Preprocessing
from cxr.imaging import preprocess_bytes

logger = logging.getLogger("benchmarks")
BIG = 1024  # full-size radiographs, as hospitals and the SPR dataset send them


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="short levels, fewer baselines (~2 min)")
    p.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--seconds", type=float, help="measured seconds per load level")
    p.add_argument(
        "--concurrency",
        type=lambda s: [int(c) for c in s.split(",")],
        help="closed-loop levels, e.g. 1,4,16,32,64",
    )
    p.add_argument("--soak", type=int, help="requests in the RSS soak (default 10000; quick 2000)")
    p.add_argument("--no-seed", action="store_true", help="skip the Flask + Keras baseline")
    p.add_argument(
        "--int8-dir",
        type=Path,
        default=Path("results/int8"),
        help="also load-test the INT8 model here if present (python -m training.quantize)",
    )
    p.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the service under test (repeatable)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile mode only: CPU ms per request by stage vs the in-process cost "
        "and the server under load at c=1 and c=32 (~1 min) → profile.json/.md",
    )
    return p.parse_args(argv)


def find_checkpoint(size: int) -> Path | None:
    """The newest runs/*/best.keras trained at the served input size."""
    found = []
    for ckpt in Path("runs").glob("*/best.keras"):
        try:
            if json.loads((ckpt.parent / "config.json").read_text()).get("image_size") == size:
                found.append(ckpt)
        except (OSError, ValueError):
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table; write JSON and PNG under --out."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(
        logging.WARNING
    )  # one line per request would drown the table
    model_path, card_path = args.model_dir / "model.onnx", args.model_dir / "model.json"
    if not model_path.is_file() or not card_path.is_file():
        print(
            f"error: no model in {args.model_dir} (model.onnx + model.json); "
            "run `make demo-model` or pass --model-dir",
            file=sys.stderr,
        )
        return 2
    card = json.loads(card_path.read_text())
    params = Preprocessing.model_validate(card["preprocessing"]).params()
    size = params.size
    quick = args.quick
    seconds = args.seconds or (2.0 if quick else 5.0)
    levels = args.concurrency or [1, 4, 16, 32, 64]
    soak_n = args.soak or (2000 if quick else 10_000)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    started = time.perf_counter()

    big_png = cached_pngs(BIG, 4 if quick else 8, args.out / "cache")
    small_png = cached_pngs(size, 32, args.out / "cache")
    images = {f"{BIG}px PNG": big_png, f"{size}px PNG": small_png}
    bodies = {k: [multipart_body(b) for b in v] for k, v in images.items()}
    tensors = [oip_tensor_body(preprocess_bytes(b, params)[None]) for b in small_png]
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_avg_start": os.getloadavg(),
        },
        "model": {
            "dir": str(args.model_dir),
            "name": card.get("name"),
            "version": card.get("version"),
            "input_size": size,
            "onnx_bytes": model_path.stat().st_size,
        },
        "images": {
            k: {"count": len(v), "mean_bytes": int(np.mean([len(b) for b in v]))}
            for k, v in images.items()
        },
        "seconds_per_level": seconds,
        "rows": [],
        "ceiling": {},
    }

    if args.profile:
        return run_profile(args, out, big_png, bodies[f"{BIG}px PNG"], params, model_path, seconds)

    logger.info("ceiling: decode + preprocess + ORT in-process")
    configs = ceiling.QUICK_CONFIGS if quick else ceiling.CONFIGS
    for name, pngs in images.items():
        n = (60 if quick else 160) if name.startswith(str(BIG)) else (600 if quick else 2000)
        out["ceiling"][name] = ceiling.measure_ceiling(pngs, n, params, model_path, configs)
        logger.info(
            "  %s: %.1f images/s (%s)",
            name,
            out["ceiling"][name]["images_per_s"],
            out["ceiling"][name]["best"],
        )
    out["ceiling"]["compute_only"] = {
        "rows_per_s": ceiling.compute_only(model_path, size, 2000, 16, 2),
        "note": "ORT alone on pre-decoded tensors, batch 16, 2 threads",
    }

    model_env = {"MODEL_DIR": str(args.model_dir.resolve())}
    for item in args.service_env:
        key, _, value = item.partition("=")
        model_env[key] = value
    rows: list[dict[str, Any]] = out["rows"]

    def sweep(
        server: ServerProcess,
        scenario: str,
        path: str,
        image: str,
        cs: list[int],
        metrics: bool = True,
        body_list: list | None = None,
    ) -> None:
        for c in cs:
            row = run_level(
                server,
                path,
                body_list or bodies[image],
                scenario=scenario,
                image=image,
                concurrency=c,
                seconds=seconds,
                metrics=metrics,
            )
            rows.append(row)
            logger.info(
                "  %-22s %-12s c=%-3d %7.1f/s p50 %6.1f p99 %7.1f ms errors %s",
                scenario,
                image,
                c,
                row["throughput"],
                row["p50_ms"],
                row["p99_ms"],
                row["errors"] or 0,
            )

    logger.info("service (defaults%s)", f", {args.service_env}" if args.service_env else "")
    server = start_server("service", "service", model_env, "/readyz", logs)
    try:
        startups, startup_cpu = [server.ready_s], [server.ready_cpu_s]
        for name in images:
            sweep(server, "service", "/v1/predict", name, levels)
        big = f"{BIG}px PNG"
        for frac in (0.5, 0.9) if not quick else (0.7,):
            rate = frac * out["ceiling"][big]["images_per_s"]
            row = run_level(
                server,
                "/v1/predict",
                bodies[big],
                scenario="service open-loop",
                image=big,
                rate=rate,
                seconds=seconds * 2,
            )
            row["offered_fraction_of_ceiling"] = frac
            rows.append(row)
            logger.info(
                "  open loop %.0f/s offered: %.1f/s p50 %.1f p99 %.1f ms errors %s",
                rate,
                row["throughput"],
                row["p50_ms"],
                row["p99_ms"],
                row["errors"] or 0,
            )
        # Clients of a c=32 burst hang up with requests queued; does the next caller wait?
        gone_key = "cxr_rejections_total{reason=client_gone}"
        before = run_level(
            server,
            "/v1/predict",
            bodies[big],
            scenario="service c=1 before burst",
            image=big,
            concurrency=1,
            seconds=5.0,
        )
        rows.append(before)
        logger.info(
            "  c=1 for 5 s just before the burst: p50 %.1f p99 %.1f ms",
            before["p50_ms"],
            before["p99_ms"],
        )
        gone0 = server.scrape().get(gone_key, 0.0)
        single, abandoned = asyncio.run(
            burst_then_single(
                server.url + "/v1/predict", bodies[big], burst=32, burst_s=seconds, after_s=5.0
            )
        )
        row = {
            "scenario": "service c=1 after c=32 burst",
            "image": big,
            **asdict(single),
            "abandoned": abandoned,
            "rss_mb": round(server.rss_mb(), 1),
            "dropped_from_queue": server.scrape().get(gone_key, 0.0) - gone0,
            "server_cpu_ms": float("nan"),
            "ratio_to_ceiling": None,
        }
        row.pop("extra")
        rows.append(row)
        logger.info(
            "  c=1 in the 5 s after a c=32 burst (%d abandoned, %d dropped from the queue "
            "uncomputed): p50 %.1f p99 %.1f ms",
            abandoned,
            row["dropped_from_queue"],
            row["p50_ms"],
            row["p99_ms"],
        )
        # The same files as raw bodies: the difference is what multipart parsing costs.
        sweep(
            server,
            "service raw body",
            "/v1/predict",
            big,
            [32],
            body_list=[raw_body(b) for b in big_png],
        )
        v2 = f"/v2/models/{card.get('name')}/infer"
        sweep(server, "service v2 tensor", v2, f"{size}px tensor", [1, 16, 32], body_list=tensors)
        logger.info("RSS soak: %d requests", soak_n)
        out["soak"] = soak(
            server, "/v1/predict", bodies[f"{size}px PNG"], soak_n, warmup=500 if quick else 1000
        )
        logger.info("  %s", out["soak"])
    finally:
        server.stop()
    for _ in range(0 if quick else 2):
        extra = start_server("service", "service", model_env, "/readyz", logs)
        startups.append(extra.ready_s)
        startup_cpu.append(extra.ready_cpu_s)
        extra.stop()
    out["startup_s"] = {
        "runs": startups,
        "median": statistics.median(startups),
        "cpu_s": startup_cpu,
    }

    if not quick:
        logger.info("service with WORKERS=1 (one process, as before issue 13)")
        server = start_server(
            "service-1worker", "service", {**model_env, "WORKERS": "1"}, "/readyz", logs
        )
        try:
            sweep(server, "service WORKERS=1", "/v1/predict", f"{BIG}px PNG", [1, 32])
        finally:
            server.stop()

    logger.info("service with MAX_BATCH_SIZE=1")
    server = start_server(
        "service-batch1", "service", {**model_env, "MAX_BATCH_SIZE": "1"}, "/readyz", logs
    )
    try:
        for name in images:
            sweep(server, "service batch=1", "/v1/predict", name, [1, 32] if quick else [1, 16, 32])
    finally:
        server.stop()

    if (args.int8_dir / "model.onnx").is_file():
        logger.info("service with the INT8 model (%s)", args.int8_dir)
        int8_env = {**model_env, "MODEL_DIR": str(args.int8_dir.resolve())}
        server = start_server("service-int8", "service", int8_env, "/readyz", logs)
        try:
            for name in images:
                sweep(server, "service INT8", "/v1/predict", name, [1, 32])
        finally:
            server.stop()

    if not args.no_seed:
        ckpt = find_checkpoint(size)
        out["seed_weights"] = (
            str(ckpt) if ckpt else "random weights (no runs/*/best.keras at this size)"
        )
        logger.info("seed-style Flask + Keras server (%s)", out["seed_weights"])
        server = start_server(
            "seed",
            "benchmarks.seed_server",
            {
                "KERAS_CHECKPOINT": str(ckpt or ""),
                "IMAGE_SIZE": str(size),
                "CUDA_VISIBLE_DEVICES": "",
            },
            "/ready",
            logs,
        )
        try:
            sweep(
                server,
                "seed Flask+Keras",
                "/predict",
                f"{BIG}px PNG",
                [1, 16] if quick else [1, 16, 32],
                metrics=False,
            )
            sweep(server, "seed Flask+Keras", "/predict", f"{size}px PNG", [16], metrics=False)
        finally:
            server.stop()

    logger.info("ceiling again (best configuration), keeping the better of the two")
    for name, pngs in images.items():
        n = (60 if quick else 160) if name.startswith(str(BIG)) else (600 if quick else 2000)
        first = out["ceiling"][name]
        again = ceiling.measure_ceiling(
            pngs, n, params, model_path, [ceiling.Config(**first["best_config"])]
        )
        out["ceiling"][name] = ceiling.merge(first, again)
        logger.info(
            "  %s: %.1f then %.1f images/s", name, first["images_per_s"], again["images_per_s"]
        )
    logger.info("profile: CPU ms per request by stage")
    out["profile"] = stage_profile.profile_stages(
        args.model_dir, big_png[0], bodies[f"{BIG}px PNG"][0], n=30 if quick else 60
    )
    stage_profile.attach_measured(out["profile"], out, f"{BIG}px PNG")
    out["machine"]["load_avg_end"] = os.getloadavg()
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    report.add_ratios(out)
    out["targets"] = report.check_targets(out)
    (args.out / "results.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    report.plot(out, args.out / "throughput_p99.png")
    table = report.markdown(out) + "\n" + stage_profile.markdown(out["profile"])
    (args.out / "table.md").write_text(table)
    print(table)
    print(
        f"\nwrote {args.out}/results.json, table.md, throughput_p99.png in {out['elapsed_s']:.0f} s"
    )
    return 0


def run_profile(
    args: argparse.Namespace,
    out: dict[str, Any],
    pngs: list[bytes],
    bodies: list[Any],
    params: Any,
    model_path: Path,
    seconds: float,
) -> int:
    """--profile: stages in-process, the ceiling, the server at c=1 and c=32 → profile.json/.md."""
    big = f"{BIG}px PNG"
    out["ceiling"][big] = ceiling.measure_ceiling(
        pngs, 60, params, model_path, ceiling.QUICK_CONFIGS
    )
    env = {"MODEL_DIR": str(args.model_dir.resolve())}
    env.update(item.partition("=")[::2] for item in args.service_env)
    server = start_server("service-profile", "service", env, "/readyz", args.out / "logs")
    try:
        for c in (1, 32):
            row = run_level(
                server,
                "/v1/predict",
                bodies,
                scenario="service",
                image=big,
                concurrency=c,
                seconds=seconds,
            )
            out["rows"].append(row)
            logger.info(
                "  service c=%d: %.1f/s, server %.2f + client %.2f CPU ms/img",
                c,
                row["throughput"],
                row["server_cpu_ms"],
                row["client_cpu_ms"],
            )
    finally:
        server.stop()
    out["profile"] = stage_profile.profile_stages(args.model_dir, pngs[0], bodies[0])
    stage_profile.attach_measured(out["profile"], out, big)
    out["machine"]["load_avg_end"] = os.getloadavg()
    (args.out / "profile.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    table = stage_profile.markdown(out["profile"])
    (args.out / "profile.md").write_text(table)
    print(table)
    print(f"wrote {args.out}/profile.json, profile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
