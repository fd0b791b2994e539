"""Fixtures for the reliability tests: real `python -m service` processes on loopback whose logs
are kept and scanned, on teardown, for the client file name every test uploads under."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import make_model_dir

REPO = Path(__file__).resolve().parents[2]
# Every upload in these tests carries this client file name; no service log may ever contain it.
SECRET_NAME = "Doe_Jane_1953-04-02_MRN-8812734"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServiceProcess:
    """`python -m service` on a loopback port, logging at DEBUG into a file."""

    def __init__(self, log: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "LOG_LEVEL": "DEBUG", "PREPROCESS_THREADS": "1", "ORT_INTRA_OP_THREADS": "1",
                    "PYTHONPATH": str(REPO), **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> ServiceProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"service exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", headers=self.auth, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"service not ready after {timeout_s} s:\n{self.log_text()[-3000:]}")

    @property
    def auth(self) -> dict[str, str]:
        """Headers carrying the first configured API key (none when auth is off)."""
        keys = [k.strip() for k in self.env.get("API_KEYS", "").split(",") if k.strip()]
        return {"X-API-Key": keys[0]} if keys else {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait for the exit code (killed, and the test failed, if it hangs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"service ignored SIGTERM for {timeout_s} s")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("rel-model"))


@pytest.fixture(scope="session")
def faulty_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("rel-faulty"), faulty=True)


@pytest.fixture(scope="session")
def service_logs() -> Iterator[list[Path]]:
    """Every service log these tests write; at the end of the run all of them are scanned, as a
    whole, for the client file name every upload carried (an error at teardown if found)."""
    logs: list[Path] = []
    yield logs
    text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
    print(f"\nservice logs scanned: {len(logs)} files, {len(text)} characters, "
          f"{text.count(chr(10))} lines; client file name found {text.count(SECRET_NAME)} times")
    assert SECRET_NAME not in text
    assert SECRET_NAME.split("_")[1] not in text  # not even a fragment of it ("Jane")


@pytest.fixture
def start_service(tmp_path: Path, tiny_model_dir: Path,
                  service_logs: list[Path]) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: start `python -m service` (env overrides as kwargs); stopped and its log scanned
    for SECRET_NAME afterwards."""
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        env.setdefault("MODEL_DIR", str(tiny_model_dir))
        log = tmp_path / f"service-{len(started)}.log"
        service_logs.append(log)
        svc = ServiceProcess(log, **env)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        if svc.proc is not None and svc.proc.poll() is None:
            svc.terminate()
    for svc in started:
        assert SECRET_NAME not in svc.log_text(), f"client file name logged in {svc.log}"
