"""WORKERS server processes on one port: each its own event loop, batcher and ORT session.

Python spends most of a request holding the GIL (HTTP parsing, multipart, routing, JSON), so one
process cannot use two cores for it; several processes can. Each worker binds the port with
SO_REUSEPORT, so the kernel spreads connections across them (a shared listening socket would let
one worker's accept loop take a whole burst of connections), and a worker that gets a connection
while it serves more than a peer passes it on (service/balance.py: the kernel's hash alone leaves
few long-lived connections unevenly spread). The supervisor (this process) holds the port without
listening, so a restarted worker gets the same one, and:

- gives every worker a slot on a shared board (service/lifecycle.py): /readyz answers 200 only
  when every worker is warm, and 503 from every worker as soon as one drains;
- sets PROMETHEUS_MULTIPROC_DIR to a fresh temporary folder before the workers start, so /metrics
  on any worker sums all of them (service/metrics.py), and deletes it at exit;
- gives every worker a slot in a shared count of open connections and a private folder for the
  Unix sockets connections are passed through (CONNECTION_BALANCE), deleted at exit;
- on SIGTERM/SIGINT marks every slot draining (readiness 503 at once, whichever worker answers),
  forwards the signal to every worker (each drains as a single server would) and exits 0 when
  all of them did;
- exits with a worker's code when it fails before it was ever ready (3 = model refused); a worker
  that dies after it was ready is replaced.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import MutableSequence
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from types import FrameType

from service.lifecycle import STATES
from service.settings import Settings

logger = logging.getLogger("service.workers")
_spawn = mp.get_context("spawn")  # a fresh interpreter: no threads or ORT state copied by fork
READY, DRAINING = STATES.index("ready"), STATES.index("draining")


def reuseport_socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (so every worker can bind the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    return sock


def stop_signal_pending(pid: int) -> bool:
    """SIGTERM or SIGINT sent to `pid` and not yet delivered (its pending-signal masks in /proc).

    A probe answered by a worker in the moment between `kill(supervisor, SIGTERM)` and the
    supervisor being scheduled to handle it must already see the server draining, as a single
    process would: the signal is pending in the supervisor until then."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False
    wanted = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))
    return any(
        int(line.split()[1], 16) & wanted
        for line in lines
        if line.startswith(("SigPnd:", "ShdPnd:"))
    )


def _worker(
    slot: int,
    board: MutableSequence[int],
    port: int,
    counts: SynchronizedArray[int] | None,
    channels: str | None,
) -> None:
    """Child process: one full server on its own SO_REUSEPORT socket."""
    from service.balance import Balancer
    from service.lifecycle import Lifecycle
    from service.server import run_server
    from service.settings import LOG_FORMAT, load_settings

    settings = load_settings(port=port)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    sock = reuseport_socket(settings.host, port, listen=True)
    supervisor = os.getppid()
    lifecycle = Lifecycle(board, slot, stopping=lambda: stop_signal_pending(supervisor))
    balancer = None
    if counts is not None and channels is not None:
        balancer = Balancer(slot, counts, board, Path(channels))
    raise SystemExit(run_server(settings, lifecycle, sockets=[sock], balancer=balancer))


def supervise(settings: Settings) -> int:
    """Run `settings.worker_count()` workers until they have drained; the exit code."""
    from prometheus_client import multiprocess

    n = settings.worker_count()
    holder = reuseport_socket(settings.host, settings.port, listen=False)
    port = int(holder.getsockname()[1])
    metrics_dir = tempfile.mkdtemp(prefix="cxr-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by every spawned worker
    board = _spawn.RawArray("b", n)
    counts = _spawn.Array("i", n) if settings.connection_balance else None  # open connections
    channels = tempfile.mkdtemp(prefix="cxr-workers-") if counts is not None else None
    procs: list[BaseProcess] = []
    ever_ready = [False] * n
    stopping = 0  # signals received

    def start(slot: int) -> BaseProcess:
        board[slot] = 0
        if counts is not None:
            counts[slot] = 0  # a dead worker's connections died with it
        proc = _spawn.Process(
            target=_worker, args=(slot, board, port, counts, channels), name=f"worker-{slot}"
        )
        proc.start()
        return proc

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping += 1
        for slot in range(n):  # readiness fails on every worker now, before any has the signal
            board[slot] = DRAINING
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, sig if stopping > 1 else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    logger.info("starting %d workers on %s:%d (metrics in %s)", n, settings.host, port, metrics_dir)
    codes: dict[int, int] = {}
    try:
        procs.extend(start(slot) for slot in range(n))
        while len(codes) < n:
            multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.2)
            for slot, proc in enumerate(procs):
                ever_ready[slot] |= board[slot] == READY
                if slot in codes or proc.exitcode is None:
                    continue
                assert proc.pid is not None
                multiprocess.mark_process_dead(proc.pid, metrics_dir)
                if stopping:
                    codes[slot] = proc.exitcode
                elif ever_ready[slot]:
                    logger.error(
                        "worker %d (pid %d) died with %s; starting another",
                        slot,
                        proc.pid,
                        proc.exitcode,
                    )
                    ever_ready[slot] = False
                    procs[slot] = start(slot)
                else:  # failed to start (model refused, port taken…): the others would too
                    logger.error(
                        "worker %d exited with %s before it was ready; stopping",
                        slot,
                        proc.exitcode,
                    )
                    forward(signal.SIGTERM, None)
                    codes[slot] = proc.exitcode or 3
        failed = [c for c in codes.values() if c]
        return failed[0] if failed else 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        holder.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if channels is not None:
            shutil.rmtree(channels, ignore_errors=True)
        logger.info("all workers stopped")
