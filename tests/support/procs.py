"""Servers as subprocesses: `python -m <module>` on a free loopback port, its output in a log
file; start waits for readiness, stop is SIGTERM (then SIGKILL if it lingers); RSS and CPU read
from /proc. Used by the tests and the benchmarks alike, so it raises instead of calling pytest."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

from tests.support.http import scrape
from tests.support.paths import REPO

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listened on at 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (the worker processes of `WORKERS` > 1)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return found


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def connection_owners(client_ports: set[int], pids: Sequence[int]) -> dict[int, int]:
    """{client port: pid of the process holding the server end} for loopback TCP connections,
    from the kernel's own tables (/proc/net/tcp*, /proc/<pid>/fd): which worker serves which
    connection, whatever the server says about itself."""
    remote_port_of: dict[int, int] = {}  # socket inode → the remote port of that connection
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port_of[int(fields[9])] = int(fields[2].rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            port = remote_port_of.get(inode)
            if port in client_ports:
                owners[port] = pid
    return owners


def _tree_sum(pid: int, read: Callable[[int], float]) -> float:
    total = 0.0
    for p in process_tree(pid):
        try:
            total += read(p)
        except (OSError, RuntimeError):
            pass  # exited meanwhile
    return total


class ServerProcess:
    """`python -m <module>` (the API: `service`; the web app: `gateway_flask`) on a loopback port.

    `env` overrides the inherited environment (HOST, PORT and PYTHONPATH are set for it);
    stdout and stderr go to `log`. `tree`: the checkout it runs from (this one by default; e.g.
    a git worktree of an earlier commit for a before/after benchmark). After `start`, `ready_s`
    is Popen → readiness 200 and `ready_cpu_s` the CPU the process spent until then (robust on
    a busy machine).
    """

    def __init__(
        self,
        module: str = "service",
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/readyz",
        port: int | None = None,
        name: str | None = None,
        command: Sequence[str] | None = None,
        tree: Path = REPO,
    ) -> None:
        self.module, self.log, self.ready_path, self.tree = module, log, ready_path, tree
        self.command = list(command or [sys.executable, "-m", module])  # or another program
        self.name = name or module
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PYTHONPATH": str(tree),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = self.ready_cpu_s = 0.0

    def start(self, timeout_s: float = 60, poll_s: float = 0.05) -> Self:
        """Start and return once `ready_path` answers 200; RuntimeError (with the end of the
        log) if the process exits first or is not ready within `timeout_s`."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            began = time.perf_counter()
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.tree,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        with httpx.Client(timeout=1.0, headers=self.auth) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before it "
                        f"was ready:\n{self.log_text()[-4000:]}"
                    )
                try:
                    if client.get(self.url + self.ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - began > timeout_s:
                    self.stop()
                    raise RuntimeError(
                        f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_text()[-4000:]}"
                    )
                time.sleep(poll_s)
        self.ready_s = time.perf_counter() - began
        self.ready_cpu_s = self.cpu_s()
        return self

    @property
    def auth(self) -> dict[str, str]:
        """Headers carrying the first configured API key (none when auth is off)."""
        keys = [k.strip() for k in self.env.get("API_KEYS", "").split(",") if k.strip()]
        return {"X-API-Key": keys[0]} if keys else {}

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes, in MB (summed)."""
        return _tree_sum(self.pid, rss_mb)

    def worker_rss_mb(self) -> dict[int, float]:
        """Resident memory of each process of the server, in MB."""
        out = {}
        for p in process_tree(self.pid):
            try:
                out[p] = rss_mb(p)
            except (OSError, RuntimeError):
                pass
        return out

    def cpu_s(self) -> float:
        """CPU seconds of the server and its worker processes so far (all threads)."""
        return _tree_sum(self.pid, cpu_s)

    def scrape(self) -> dict[str, float]:
        """Every sample of the server's /metrics as {name{labels}: value}."""
        return scrape(self.url, headers=self.auth)

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait for the exit code; TimeoutError (after a SIGKILL) if it hangs."""
        assert self.proc is not None, "not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(f"{self.name} ignored SIGTERM for {timeout_s} s") from None

    def stop(self, timeout_s: float = 15) -> None:
        """Clean-up: SIGTERM, then SIGKILL if it does not exit within `timeout_s`; never raises."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def debug_service(log: Path, *, port: int | None = None, **env: str) -> ServerProcess:
    """`python -m service` logging at DEBUG (a log scan then sees everything it could ever write),
    on one decode and one ORT thread; `env` overrides."""
    return ServerProcess(
        "service",
        log=log,
        port=port,
        env={"LOG_LEVEL": "DEBUG", "PREPROCESS_THREADS": "1", "ORT_INTRA_OP_THREADS": "1", **env},
    )


def run_training(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`python -m training …` from the repository root; by default with TensorFlow's start-up
    noise silenced (pass `env` to run it as a newcomer's shell would)."""
    if env is None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
