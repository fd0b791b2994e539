"""Several worker processes (WORKERS): the count follows the setting, /metrics is one view of all
of them, readiness waits for every worker, and SIGTERM under load still loses nothing."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx

from tests.support.http import scrape
from tests.support.images import encode, xray
from tests.support.loadgen import SECRET_NAME, run_load


def workers_of(pid: int) -> list[int]:
    """The server processes the supervisor `pid` spawned (not multiprocessing's helper)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(c)
        for c in children
        if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")
    ]


def samples(url: str) -> dict[str, float]:
    """/metrics over a new connection (so any worker may answer) as {name{labels}: value}."""
    return scrape(url, headers={"Connection": "close"})


def test_worker_count_follows_the_setting(start_service) -> None:
    assert len(workers_of(start_service(WORKERS="3").pid)) == 3
    assert workers_of(start_service(WORKERS="1").pid) == []  # one worker: no supervisor


def test_metrics_add_up_across_workers(start_service) -> None:
    svc = start_service(WORKERS="2")
    png = encode(xray(256, 256, seed=3), "PNG")
    sent = 24
    for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
        r = httpx.post(
            f"{svc.url}/v1/predict",
            headers={"Connection": "close"},
            files={"file": (f"{SECRET_NAME}.png", png, "image/png")},
        )
        assert r.status_code == 200
    folder = re.search(r"metrics in (\S+)\)", svc.log_text()).group(1)
    writers = {p.stem.rsplit("_", 1)[1] for p in Path(folder).glob("counter_*.db")}
    assert len(writers) == 2  # both workers answered some of them
    for _ in range(6):  # whichever worker answers the scrape, the totals are the same
        m = samples(svc.url)
        assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=200}"] == sent
        assert m["cxr_batch_size_sum"] == sent
        assert m["cxr_preprocess_duration_seconds_count"] == sent
        assert m["cxr_requests_in_flight"] == 1  # this scrape, summed over live workers
        assert m["cxr_queue_depth"] == 0
        assert sum(v for k, v in m.items() if k.startswith("cxr_model_info")) == 1
    assert svc.terminate() == 0
    assert not Path(folder).exists()  # the supervisor removes its metrics folder


def test_sigterm_under_load_with_workers_loses_nothing(start_service) -> None:
    svc = start_service(
        WORKERS="2",
        MAX_BATCH_SIZE="8",
        MAX_WAIT_MS="100",
        FLUSH_WHEN_IDLE="false",
        SHUTDOWN_GRACE_S="2",
        DRAIN_TIMEOUT_S="20",
    )
    payloads = [encode(xray(512, 512, seed=i), "PNG") for i in range(8)]
    first_probe: list[int] = []

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(
            run_load(svc.url, payloads, workers=16, duration_s=30, stop=stop)
        )
        await asyncio.sleep(2.0)
        svc.proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=5) as prober:
            while not stop.is_set():
                r = await prober.get(f"{svc.url}/readyz", headers={"Connection": "close"})
                first_probe.append(r.status_code)
                if r.status_code == 503:
                    assert "draining" in r.json()["detail"]
                    stop.set()
                await asyncio.sleep(0.02)
        return await load

    tally = asyncio.run(scenario())
    code = svc.terminate()
    print(f"\nSIGTERM under load, 2 workers: {tally.summary()}; exit code {code}")
    assert first_probe == [503]
    assert tally.lost == 0 and tally.refused_connections == 0, tally.summary()
    assert tally.statuses() == {200: tally.sent}, tally.summary()
    assert code == 0
    assert svc.log_text().count("draining: readiness now 503") == 2  # each worker drained
