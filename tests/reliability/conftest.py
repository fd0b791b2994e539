"""Fixtures for the reliability tests: real `python -m service` processes on loopback whose logs
are kept and scanned, on teardown, for the client file name every test uploads under."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.loadgen import SECRET_NAME
from tests.support.procs import ServerProcess, debug_service


@pytest.fixture(scope="session")
def service_logs() -> Iterator[list[Path]]:
    """Every service log these tests write; at the end of the run all of them are scanned, as a
    whole, for the client file name every upload carried (an error at teardown if found)."""
    logs: list[Path] = []
    yield logs
    text = "".join(p.read_text(errors="replace") for p in logs if p.exists())
    print(
        f"\nservice logs scanned: {len(logs)} files, {len(text)} characters, "
        f"{text.count(chr(10))} lines; client file name found {text.count(SECRET_NAME)} times"
    )
    assert SECRET_NAME not in text
    assert SECRET_NAME.split("_")[1] not in text  # not even a fragment of it ("Jane")


@pytest.fixture
def start_service(
    tmp_path: Path, model_dir: Path, service_logs: list[Path]
) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start `python -m service` (env overrides as kwargs); stopped and its log scanned
    for SECRET_NAME afterwards."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        env.setdefault("MODEL_DIR", str(model_dir))
        log = tmp_path / f"service-{len(started)}.log"
        service_logs.append(log)
        svc = debug_service(log, **env)
        started.append(svc)
        return svc.start()

    yield start
    for svc in started:
        if svc.proc is not None and svc.proc.poll() is None:
            svc.terminate()
    for svc in started:
        assert SECRET_NAME not in svc.log_text(), f"client file name logged in {svc.log}"
