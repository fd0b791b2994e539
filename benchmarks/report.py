"""Turn the raw results into ratios, target verdicts, a Markdown table and a PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BIG = "1024px PNG"


def _ceiling_for(out: dict[str, Any], image: str) -> float | None:
    if image.endswith("tensor"):
        return out["ceiling"]["compute_only"]["rows_per_s"]
    entry = out["ceiling"].get(image)
    return entry["images_per_s"] if entry else None


def add_ratios(out: dict[str, Any]) -> None:
    """Each row's throughput as a fraction of the in-process ceiling for the same input."""
    for row in out["rows"]:
        top = _ceiling_for(out, row["image"])
        row["ratio_to_ceiling"] = row["throughput"] / top if top else None


def _row(out: dict[str, Any], scenario: str, image: str, level: float) -> dict[str, Any] | None:
    for row in out["rows"]:
        if row["scenario"] == scenario and row["image"] == image and row["level"] == level:
            return row
    return None


def check_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, the limit and a verdict."""
    targets = []

    def add(
        name: str,
        value: float | None,
        limit: float,
        ok: bool | None,
        unit: str = "",
        note: str = "",
    ) -> None:
        targets.append(
            {
                "target": name,
                "measured": value,
                "limit": limit,
                "unit": unit,
                "met": ok,
                "note": note,
            }
        )

    top = out["ceiling"][BIG]["images_per_s"]
    c32 = _row(out, "service", BIG, 32)
    ratio = c32["throughput"] / top if c32 else None
    note = ""
    if c32:
        # The load generator runs on the same cores; without it the server would get its share.
        share = c32["client_cpu_ms"] / (c32["client_cpu_ms"] + c32["server_cpu_ms"])
        note = (
            f"load generator used {share:.0%} of the CPU; without it ≈ "
            f"{ratio / (1 - share):.2f} × ceiling (estimate)"
        )
    add(
        "HTTP throughput at c=32 ≥ 85 % of ceiling (1024px)",
        ratio,
        0.85,
        None if ratio is None else ratio >= 0.85,
        "× ceiling",
        note,
    )
    svc16, seed16 = _row(out, "service", BIG, 16), _row(out, "seed Flask+Keras", BIG, 16)
    speedup = svc16["throughput"] / seed16["throughput"] if svc16 and seed16 else None
    add(
        "≥ 8× seed-style throughput at c=16 (1024px)",
        speedup,
        8.0,
        None if speedup is None else speedup >= 8.0,
        "×",
    )
    single = out["ceiling"][BIG]["single_image"]["p50_ms"]
    after_burst = "in the 5 s after a c=32 burst whose clients hung up"
    for scenario, when in (("service", "fresh"), ("service c=1 after c=32 burst", after_burst)):
        c1 = _row(out, scenario, BIG, 1)
        add(
            f"p99 at c=1 ≤ in-process single image + 10 ms (1024px), {when}",
            c1["p99_ms"] if c1 else None,
            single + 10,
            None if c1 is None else c1["p99_ms"] <= single + 10,
            "ms",
            f"{c1.get('abandoned')} requests abandoned by the burst, "
            f"{c1.get('dropped_from_queue', 0):.0f} of them dropped from the queue uncomputed"
            if c1 and "abandoned" in c1
            else "",
        )
    start = out.get("startup_s", {}).get("median")
    cpu = out.get("startup_s", {}).get("cpu_s")
    add(
        "start-up to /readyz ≤ 3 s",
        start,
        3.0,
        None if start is None else start <= 3.0,
        "s",
        f"CPU used until ready: {min(cpu):.2f} s" if cpu else "",
    )
    soak = out.get("soak")
    growth = soak.get("max_process_growth_pct", soak["growth_pct"]) if soak else None
    add(
        f"RSS growth < 5 % per worker over {soak['requests'] if soak else '?'} requests",
        growth,
        5.0,
        None if growth is None else growth < 5.0,
        "%",
        f"{soak.get('processes', 1)} processes; all together {soak['growth_pct']:+.2f} %"
        if soak
        else "",
    )
    return targets


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _repeat(c: dict[str, Any]) -> str:
    if "repeat_images_per_s" not in c:
        return ""
    return (
        f"; {c['first_images_per_s']:.1f} at the start, {c['repeat_images_per_s']:.1f} at the end"
    )


def markdown(out: dict[str, Any]) -> str:
    """The results table, the ceiling and the target verdicts as Markdown."""
    head = (
        f"Run {out['date']} on {out['machine']['cpus']} CPU cores "
        f"({'quick' if out['quick'] else 'full'} mode, {out['seconds_per_level']:g} s per level; "
        f"load average {out['machine']['load_avg_start'][0]:.1f} at start)."
    )
    lines = [head, ""]
    for name in (k for k in out["ceiling"] if k != "compute_only"):
        c = out["ceiling"][name]
        lines.append(
            f"- In-process ceiling, {name}: **{c['images_per_s']:.1f} images/s** "
            f"({c['best']}; {c['cpu_ms']:.1f} CPU ms/image{_repeat(c)}); one image alone "
            f"{c['single_image']['p50_ms']:.1f} ms p50, {c['single_image']['p99_ms']:.1f} ms p99."
        )
    lines.append(
        f"- ORT alone on tensors: {out['ceiling']['compute_only']['rows_per_s']:.0f} rows/s."
    )
    header = (
        "| scenario | input | load | images/s | × ceiling | p50 ms | p95 ms | p99 ms | errors | "
        "mean batch | CPU ms/img server + client | RSS MB |"
    )
    lines += ["", header, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out["rows"]:
        load = f"c={r['level']:g}" if r["mode"] == "closed" else f"{r['level']:.0f}/s open"
        errors = sum(r["errors"].values()) if r["errors"] else 0
        lines.append(
            f"| {r['scenario']} | {r['image']} | {load} | {r['throughput']:.1f} | "
            f"{_fmt(r['ratio_to_ceiling'], 2)} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {errors} | {_fmt(r.get('mean_batch'), 2)} | "
            f"{r['server_cpu_ms']:.1f} + {r['client_cpu_ms']:.1f} | {r['rss_mb']:.0f} |"
        )
    lines += ["", "| target | measured | limit | met | note |", "|---|---:|---:|---|---|"]
    for t in out["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(
            f"| {t['target']} | {_fmt(t['measured'], 2)} {t['unit']} | "
            f"{t['limit']:.2f} {t['unit']} | {met} | {t['note']} |"
        )
    if "seed_weights" in out:
        lines.append(f"\nSeed-style baseline weights: {out['seed_weights']}.")
    if "startup_s" in out:
        lines.append(
            f"Start-up runs (s): {', '.join(f'{s:.2f}' for s in out['startup_s']['runs'])}."
        )
    return "\n".join(lines) + "\n"


def plot(out: dict[str, Any], path: Path) -> None:
    """Throughput (as × ceiling) and p99 against concurrency, one line per scenario and input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in out["rows"]:
        if r["mode"] == "closed":
            series.setdefault(f"{r['scenario']} · {r['image']}", []).append(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=80)
    for label, rows in series.items():
        xs = [r["level"] for r in rows]
        ax1.plot(xs, [r["ratio_to_ceiling"] or 0 for r in rows], marker="o", label=label)
        ax2.plot(xs, [r["p99_ms"] for r in rows], marker="o", label=label)
    ax1.axhline(0.85, color="grey", linestyle="--", linewidth=1)
    ax1.set(
        xscale="log",
        xlabel="concurrency",
        ylabel="throughput / in-process ceiling",
        title="Throughput",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="concurrency",
        ylabel="p99 latency (ms)",
        title="p99 latency",
    )
    ax1.legend(fontsize=7)
    fig.suptitle(f"{out['machine']['cpus']} cores, {out['date'][:10]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
