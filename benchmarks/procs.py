"""Servers for the benchmarks: the shared `ServerProcess` (tests/support/procs.py) started the way
a measurement wants it: quiet logs, unbuffered output, readiness polled every 10 ms."""

from __future__ import annotations

from pathlib import Path

from tests.support.paths import REPO
from tests.support.procs import ServerProcess

__all__ = ["ServerProcess", "start_server"]


def start_server(
    name: str,
    module: str,
    env: dict[str, str],
    ready_path: str,
    log_dir: Path,
    timeout_s: float = 120.0,
    tree: Path = REPO,
) -> ServerProcess:
    """Start `python -m module` on a free loopback port; return once `ready_path` answers 200
    (`ready_s`: Popen → ready; `ready_cpu_s`: the CPU it spent until then). `tree`: run the
    module of another checkout (e.g. a git worktree of an earlier commit) with this interpreter."""
    server = ServerProcess(
        module,
        log=log_dir / f"{name}.log",
        ready_path=ready_path,
        name=name,
        env={"LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", **env},
        tree=tree.resolve(),
    )
    return server.start(timeout_s=timeout_s, poll_s=0.01)
