"""Target verdicts and the table are computed from the measurements, never assumed."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report


def row(scenario: str, level: float, throughput: float, p99: float = 30.0) -> dict:
    return {
        "scenario": scenario,
        "image": "1024px PNG",
        "mode": "closed",
        "level": level,
        "throughput": throughput,
        "p50_ms": p99 / 2,
        "p95_ms": p99 * 0.9,
        "p99_ms": p99,
        "errors": {},
        "mean_batch": 1.0,
        "server_cpu_ms": 18.0,
        "client_cpu_ms": 2.0,
        "rss_mb": 120.0,
    }


def results(c32: float, seed16: float, p99_c1: float, startup: float, growth: float) -> dict:
    return {
        "date": "2026-11-25T23:00:00+00:00",
        "quick": False,
        "seconds_per_level": 5,
        "machine": {"cpus": 2, "load_avg_start": (1.0, 1.0, 1.0)},
        "ceiling": {
            "1024px PNG": {
                "images_per_s": 100.0,
                "best": "x",
                "cpu_ms": 19.0,
                "single_image": {"p50_ms": 12.0, "p99_ms": 15.0},
            },
            "compute_only": {"rows_per_s": 800.0},
        },
        "rows": [
            row("service", 1, 60, p99_c1),
            row("service", 16, 90),
            row("service", 32, c32),
            row("seed Flask+Keras", 16, seed16),
            row("service c=1 after c=32 burst", 1, 60, p99_c1),
        ],
        "startup_s": {"runs": [startup], "median": startup, "cpu_s": [0.7]},
        "soak": {"requests": 10_000, "growth_pct": growth},
    }


def test_all_targets_met() -> None:
    out = results(c32=90, seed16=10, p99_c1=20, startup=1.5, growth=1.0)
    report.add_ratios(out)
    verdicts = [t["met"] for t in report.check_targets(out)]
    assert verdicts == [True, True, True, True, True, True]
    assert out["rows"][2]["ratio_to_ceiling"] == 0.9


def test_each_miss_is_reported(tmp_path: Path) -> None:
    out = results(c32=80, seed16=20, p99_c1=25, startup=3.5, growth=6.0)
    report.add_ratios(out)
    out["targets"] = report.check_targets(out)
    assert [t["met"] for t in out["targets"]] == [False, False, False, False, False, False]
    assert "10%" in out["targets"][0]["note"]  # load generator share: 2 of 20 CPU ms
    table = report.markdown(out)
    assert table.count("**no**") == 6 and "| service | 1024px PNG | c=32 | 80.0 | 0.80 |" in table
    report.plot(out, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
