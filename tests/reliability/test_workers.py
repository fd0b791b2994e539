"""Several worker processes (WORKERS): the count follows the setting, /metrics is one view of all
of them, readiness waits for every worker, SIGTERM under load still loses nothing, and a few
long-lived connections are spread evenly over the workers (CONNECTION_BALANCE)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.support.http import read_responses, scrape
from tests.support.images import encode, xray
from tests.support.loadgen import SECRET_NAME, run_load
from tests.support.procs import ServerProcess, connection_owners


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


def _answer(conn: socket.socket) -> bytes:
    """The head of the one whole HTTP/1.1 response read off `conn`."""
    [(head, _)], more = read_responses(conn)
    assert not more, "more than one response"
    return head


def _open_set(svc: ServerProcess, request: bytes, n: int) -> list[socket.socket]:
    """`n` connections opened back to back, each sending `request` at once (before any worker
    could have placed it), each answered 200."""
    conns = []
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
        conn.sendall(request)
        conns.append(conn)
    for conn in conns:
        head = _answer(conn)
        assert head.startswith(b"HTTP/1.1 200"), head
    return conns


def _split(svc: ServerProcess, conns: list[socket.socket]) -> list[int]:
    """How many of `conns` each worker serves, smallest first (from the kernel's tables)."""
    workers = workers_of(svc.pid)
    owners = connection_owners({c.getsockname()[1] for c in conns}, workers)
    assert len(owners) == len(conns)  # every connection is held by exactly one worker
    return sorted(list(owners.values()).count(w) for w in workers)


def _passed(svc: ServerProcess) -> float:
    return samples(svc.url).get("cxr_connections_passed_total", 0.0)


HEALTH = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def test_few_connections_are_spread_evenly_over_the_workers(start_service) -> None:
    svc = start_service(WORKERS="2")
    png = encode(xray(256, 256, seed=5), "PNG")
    part = f'Content-Disposition: form-data; name="file"; filename="{SECRET_NAME}.png"'
    body = b"--b0\r\n" + part.encode() + b"\r\nContent-Type: image/png\r\n\r\n"
    body += png + b"\r\n--b0--\r\n"
    upload = (
        "POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; "
        f"boundary=b0\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    splits = []
    for trial in range(12):  # the kernel's hash alone puts all 4 on one worker 1 time in 8
        conns = _open_set(svc, upload if trial % 3 == 0 else HEALTH, 4)
        splits.append(_split(svc, conns))
        for conn in conns:  # the connections stay usable where they were placed
            conn.sendall(HEALTH)
            assert _answer(conn).startswith(b"HTTP/1.1 200")
            conn.close()
        time.sleep(0.1)  # the workers see the closes before the next set
    print(f"\n12 sets of 4 connections over 2 workers: {splits}")
    assert splits == [[2, 2]] * 12
    assert _passed(svc) > 0  # (all 12 placed evenly by the hash itself: p = 4^-12)
    gauges = {k: v for k, v in samples(svc.url).items() if k.startswith("cxr_worker_connections")}
    assert len(gauges) == 2  # one series per worker (pid label)
    assert svc.terminate() == 0


def test_without_balancing_the_kernel_alone_places_connections(start_service) -> None:
    svc = start_service(WORKERS="2", CONNECTION_BALANCE="false")
    for _ in range(4):
        conns = _open_set(svc, HEALTH, 4)
        assert sum(_split(svc, conns)) == 4
        for conn in conns:
            conn.close()
    assert _passed(svc) == 0
    assert svc.terminate() == 0


def test_a_replaced_worker_gets_its_share_of_new_connections(start_service) -> None:
    svc = start_service(WORKERS="2")
    held = _open_set(svc, HEALTH, 4)  # 2 + 2
    victim = workers_of(svc.pid)[0]
    os.kill(victim, signal.SIGKILL)  # its two connections die with it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the supervisor starts another; ready when both are
        workers = workers_of(svc.pid)
        if victim not in workers and len(workers) == 2:
            r = httpx.get(f"{svc.url}/readyz", headers={"Connection": "close"})
            if r.status_code == 200:
                break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no replacement worker ready:\n{svc.log_text()[-2000:]}")
    survivors = [c for c in held if _alive(c)]
    assert len(survivors) == 2
    fresh = _open_set(svc, HEALTH, 4)  # the new worker (0 open) gets the new ones first
    assert _split(svc, survivors + fresh) == [3, 3]
    for conn in survivors + fresh:
        conn.close()
    assert svc.terminate() == 0


def _alive(conn: socket.socket) -> bool:
    try:
        conn.sendall(HEALTH)
        return _answer(conn).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
