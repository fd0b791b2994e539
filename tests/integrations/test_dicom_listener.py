"""The DICOM listener against dcmtk's echoscu/storescu and a real API on loopback."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from integrations.dicom_listener import Listener, ListenerSettings
from service.settings import Settings
from tests.support.models import make_model_dir, write_card
from tests.support.pacs import MISMATCH, LoopbackApi, cr_dicom, free_port

pytestmark = pytest.mark.skipif(
    not (shutil.which("storescu") and shutil.which("echoscu")),
    reason="dcmtk (storescu/echoscu) missing: scripts/system-deps.sh installs it",
)

N = 200


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackApi]:
    model_dir = make_model_dir(tmp_path_factory.mktemp("listener-model"))
    write_card(model_dir, mismatch=MISMATCH)
    settings = Settings(
        model_dir=model_dir,
        host="127.0.0.1",
        port=0,
        preprocess_threads=1,
        ort_intra_op_threads=1,
        max_wait_ms=1,
    )
    server = LoopbackApi(settings, free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """N tiny CR files (64–128 px); every tenth is labelled as a woman of 20 (flagged)."""
    folder = tmp_path_factory.mktemp("cr")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        side = int(rng.integers(64, 129))
        pixels = np.full((side, side), 220, np.uint8)  # mostly bright → tiny model: male, ~85
        pixels[side // 3 : side // 2, side // 3 : side // 2] = 120
        sex, age = ("F", "020Y") if i % 10 == 0 else ("M", "080Y")
        path = folder / f"{i:03d}.dcm"
        path.write_bytes(cr_dicom(pixels, PatientID=f"P{i}", PatientSex=sex, PatientAge=age))
        paths.append(path)
    return paths


def listener_for(api: LoopbackApi, **overrides: object) -> Listener:
    base = {
        "host": "127.0.0.1",
        "port": 0,
        "api_url": api.url,
        "ae_title": "CXRCHECK",
        "allowed_calling_aes": ["TESTSCU"],
        "retry_wait_s": 0.1,
        "workers": 2,
    }
    return Listener(ListenerSettings(**{**base, **overrides})).start()


def dcmtk(
    tool: str, port: int, *args: str, calling: str = "TESTSCU"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool, "-aet", calling, "-aec", "CXRCHECK", "-to", "10", "127.0.0.1", str(port), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_echo_and_calling_ae_filter(api: LoopbackApi) -> None:
    listener = listener_for(api)
    try:
        assert dcmtk("echoscu", listener.port).returncode == 0
        refused = dcmtk("echoscu", listener.port, calling="STRANGER")
        assert refused.returncode != 0
    finally:
        listener.stop()


def test_200_stores_are_all_answered_across_an_api_restart(
    api: LoopbackApi, files: list[Path]
) -> None:
    listener = listener_for(api)
    try:
        first = dcmtk("storescu", listener.port, *map(str, files[: N // 2]))
        assert first.returncode == 0, first.stderr[-2000:]
        api.stop()  # the API goes away with work still queued or in flight
        second = dcmtk("storescu", listener.port, *map(str, files[N // 2 :]))
        assert second.returncode == 0, second.stderr[-2000:]  # C-STORE answered while down
        assert listener.stats.received == N
        time.sleep(0.5)
        api.start()
        assert wait_for(lambda: listener.stats.answered + listener.stats.failed >= N, 60), (
            listener.stats
        )
    finally:
        listener.stop()
    stats = listener.stats
    assert (stats.received, stats.answered, stats.failed) == (N, N, 0), stats
    assert len(listener.results) == N and stats.retries > 0
    assert stats.mismatches == N // 10


def test_sr_goes_to_the_destination(api: LoopbackApi, files: list[Path]) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage

    received: list = []
    lock = threading.Lock()

    def on_store(event) -> int:
        with lock:
            received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="SRSINK")
    ae.add_supported_context(ComprehensiveSRStorage)
    sink = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    listener = listener_for(api, sr_destination=f"SRSINK@127.0.0.1:{sink.server_address[1]}")
    try:
        assert dcmtk("storescu", listener.port, *map(str, files[:3])).returncode == 0
        assert wait_for(lambda: listener.stats.sr_sent + listener.stats.sr_failed >= 3, 30)
    finally:
        listener.stop()
        sink.shutdown()
    assert listener.stats.sr_sent == 3
    referenced = {
        sr.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for sr in received
    }
    assert referenced == set(listener.results) and all(
        sr.VerificationFlag == "UNVERIFIED" for sr in received
    )


def test_module_entry_point_answers_echo_and_stops_on_sigterm(api: LoopbackApi) -> None:
    import os
    import signal
    import sys

    port = free_port()
    env = {
        **os.environ,
        "LISTENER_HOST": "127.0.0.1",
        "LISTENER_PORT": str(port),
        "LISTENER_API_URL": api.url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrations.dicom_listener"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: dcmtk("echoscu", port).returncode == 0, 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "listening as CXRCHECK" in err
    bad = subprocess.run(
        [sys.executable, "-m", "integrations.dicom_listener"],
        timeout=30,
        env={**env, "LISTENER_SR_DESTINATION": "nowhere"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0 and "LISTENER_SR_DESTINATION 'nowhere'" in bad.stderr


def test_spool_folder_keeps_unanswered_images_for_the_next_start(
    api: LoopbackApi, files: list[Path], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    down = listener_for(
        api, api_url=f"http://127.0.0.1:{free_port()}", spool_dir=spool, retry_for_s=0.3
    )
    try:
        assert dcmtk("storescu", down.port, *map(str, files[:3])).returncode == 0
        assert wait_for(lambda: down.stats.failed >= 3, 20), down.stats
    finally:
        down.stop()
    assert len(list(spool.glob("*.dcm"))) == 3  # the API never answered: kept
    up = listener_for(api, spool_dir=spool)
    try:
        assert wait_for(lambda: up.stats.answered >= 3, 20), up.stats
    finally:
        up.stop()
    assert not list(spool.glob("*.dcm"))  # answered: gone from disk


def test_without_a_spool_folder_nothing_is_written(
    api: LoopbackApi, files: list[Path], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    listener = listener_for(api)
    try:
        assert dcmtk("storescu", listener.port, *map(str, files[:2])).returncode == 0
        assert wait_for(lambda: listener.stats.answered >= 2, 20)
    finally:
        listener.stop()
    assert not list(tmp_path.iterdir())
