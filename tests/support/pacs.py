"""The PACS tests' helpers: CR DICOM files, an API restartable on one loopback port, a
loopback-only network namespace for Orthanc."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import warnings

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.support.paths import REPO
from tests.support.procs import free_port  # noqa: F401 - re-exported for the PACS tests

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


# Fixed mismatch parameters for the tiny model's cards: decisions follow from its outputs, not data.
MISMATCH = {
    "method": "test",
    "alpha": 0.01,
    "age_scale_same": 5.0,
    "age_scale_other": 15.0,
    "p_male_prior": 0.5,
    "thresholds": {"both": 4.0, "sex": 3.0, "age": 2.0},
}


def cr_dicom(pixels: np.ndarray, *, study_uid: str | None = None, **tags: str) -> bytes:
    """An 8-bit CR Part-10 file around `pixels` with the given tags (PatientSex='M', …)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CR_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "CR", "1", "1", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Test^Synthetic", "TEST0", ""
    with warnings.catch_warnings():  # hostile values on purpose
        warnings.simplefilter("ignore")
        for key, value in tags.items():
            setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def netns_available() -> str | None:
    """None when `unshare -n` works here, else why not (the Orthanc test needs it: Orthanc 1.10
    cannot bind its HTTP server to loopback only, so it runs where loopback is the only link)."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare/ip not installed"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return None if probe.returncode == 0 else f"unshare -n fails: {probe.stderr.decode()[:200]}"


def run_in_netns(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """`python -m module args` in a new network namespace whose only link is loopback."""
    script = f'ip link set lo up && exec "{sys.executable}" -m {module} "$@"'
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", script, "sh", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


class LoopbackApi:
    """Our API (uvicorn, in a thread) on a fixed loopback port, so it can be restarted there."""

    def __init__(self, settings, port: int) -> None:
        self.settings, self.port = settings, port
        self.url = f"http://127.0.0.1:{port}"
        self.server = None

    def start(self) -> LoopbackApi:
        import threading
        import time

        import uvicorn

        from service.app import create_app

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.sock = sock
        config = uvicorn.Config(
            create_app(self.settings),
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)
            self.sock.close()
            self.server = None
