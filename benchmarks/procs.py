"""Server subprocesses on free loopback ports: start, time readiness, read RSS/CPU, scrape, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """One server started with `python -m <module>`; `ready_s` is Popen → readiness 200."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    ready_s: float = 0.0
    ready_cpu_s: float = 0.0  # CPU the process spent until ready (robust on a busy machine)
    log_path: Path | None = None
    _cpu_mark: float = field(default=0.0, repr=False)

    def rss_mb(self) -> float:
        """Resident set size of the server process now, in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used so far (all its threads)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def scrape(self) -> dict[str, float]:
        """Unlabelled Prometheus samples from /metrics (enough for batch-size sums and counts)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(name: str, module: str, env: dict[str, str], ready_path: str,
                 log_dir: Path, timeout_s: float = 120.0) -> ServerProcess:
    """Start `python -m module` on a free loopback port; return once `ready_path` answers 200."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(name, proc, f"http://127.0.0.1:{port}", log_path=log_path)
    with httpx.Client(timeout=1.0) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready; "
                                   f"see {log_path}")
            try:
                if client.get(server.url + ready_path).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > timeout_s:
                server.stop()
                raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s; see {log_path}")
            time.sleep(0.01)
    server.ready_s = time.perf_counter() - start
    server.ready_cpu_s = server.cpu_s()
    return server
