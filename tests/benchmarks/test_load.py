"""The load generator against a real `python -m service` subprocess on a tiny ONNX model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.payloads import multipart_body, phantom_pngs
from benchmarks.procs import ServerProcess, start_server
from benchmarks.scenarios import run_level, soak
from tests.support.models import SIZE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    with start_server(
        "service",
        "service",
        {"MODEL_DIR": str(model_dir)},
        "/readyz",
        tmp_path_factory.mktemp("logs"),
        timeout_s=60,
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def bodies() -> list:
    return [multipart_body(b) for b in phantom_pngs(SIZE, 3)]


def test_closed_loop_counts_answers_and_reads_server_side(
    server: ServerProcess, bodies: list
) -> None:
    row = run_level(
        server, "/v1/predict", bodies, scenario="t", image="64px", concurrency=3, seconds=0.5
    )
    assert row["ok"] > 0 and row["errors"] == {}
    assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert (
        row["mean_batch"] is not None and 1 <= row["mean_batch"] <= 3
    )  # never more than in flight
    assert row["rss_mb"] > 10 and row["server_cpu_ms"] > 0 and server.ready_s > 0


def test_open_loop_sends_at_the_offered_rate(server: ServerProcess, bodies: list) -> None:
    row = run_level(server, "/v1/predict", bodies, scenario="t", image="64px", rate=40, seconds=1.0)
    assert row["errors"] == {}
    assert 15 <= row["ok"] <= 80  # Poisson arrivals at 40/s for 1 s


def test_refused_requests_are_errors_not_throughput(server: ServerProcess) -> None:
    pdf = [multipart_body(b"%PDF-1.4 not an image", filename="x.pdf")]
    row = run_level(
        server, "/v1/predict", pdf, scenario="t", image="pdf", concurrency=2, seconds=0.3
    )
    assert row["ok"] == 0 and row["throughput"] == 0
    assert row["errors"].get("415", 0) > 0


def test_soak_reports_rss_growth(server: ServerProcess, bodies: list) -> None:
    result = soak(server, "/v1/predict", bodies, requests=60, warmup=20, concurrency=4)
    assert result["ok"] == 60 and result["errors"] == 0
    assert result["rss_after_mb"] > 0 and isinstance(result["growth_pct"], float)


def test_a_server_can_run_from_another_checkout(tmp_path: Path, model_dir: Path) -> None:
    # benchmarks.ab --a-tree: service A from e.g. a git worktree of an earlier commit
    import shutil

    import httpx

    from tests.support.paths import REPO

    tree = tmp_path / "other"
    for package in ("service", "cxr"):
        shutil.copytree(
            REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    app = tree / "service" / "app.py"
    app.write_text(app.read_text().replace('version="0.1.0"', 'version="0.1.0+other-tree"'))
    env = {"MODEL_DIR": str(model_dir)}
    with start_server("other", "service", env, "/readyz", tmp_path / "logs", tree=tree) as proc:
        info = httpx.get(proc.url + "/openapi.json").json()["info"]
    assert info["version"] == "0.1.0+other-tree"
