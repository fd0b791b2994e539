"""`python -m integrations.dicom_listener`: a DICOM node that checks every image it receives.

A pynetdicom Storage SCP (+ Verification, i.e. C-ECHO). Each C-STORE is answered "success" at
once and the file goes into a bounded in-memory queue; worker threads send it to the API's
POST /v1/verify over HTTP (POST /v1/predict when the header has no sex/age to compare), retrying
while the API is down, overloaded or restarting (up to LISTENER_RETRY_FOR_S per image). When the
queue is full the C-STORE is refused with "out of resources" (0xA700), so the sender keeps the
image and retries: nothing is silently dropped. Optionally the answer goes back as a DICOM SR
(integrations/sr.py) by C-STORE to LISTENER_SR_DESTINATION.

Patient data stays in memory unless an operator sets LISTENER_SPOOL_DIR (then each image is
written there until answered, and re-queued on the next start). Logs carry SOP Instance UIDs
and outcomes, never names, other demographics or pixels.
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger("integrations.dicom_listener")

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
RETRY_STATUSES = {429, 502, 503, 504}


class ListenerSettings(BaseSettings):
    """Every knob, from LISTENER_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="LISTENER_", case_sensitive=False, extra="ignore")

    ae_title: str = Field("CXRCHECK", min_length=1, max_length=16)
    host: str = "0.0.0.0"  # containers need every interface; tests and laptops: 127.0.0.1
    port: int = Field(11112, ge=0, le=65535)
    allowed_calling_aes: Annotated[list[str], NoDecode] = []  # empty = any calling AE title
    api_url: str = "http://127.0.0.1:8000"
    api_key: str = ""
    api_timeout_s: float = Field(30.0, gt=0)
    queue_size: int = Field(1000, ge=1)  # images held in memory waiting for the API
    workers: int = Field(2, ge=1, le=32)
    retry_for_s: float = Field(300.0, ge=0)  # keep retrying one image this long, then give up
    retry_wait_s: float = Field(0.5, gt=0)  # first wait; doubles up to 10 s
    spool_dir: Path | None = None  # unset = never write patient data to disk
    sr_destination: str = ""  # "AE@host:port": C-STORE the SR there; empty = no SR
    log_level: str = "INFO"

    @field_validator("allowed_calling_aes", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("sr_destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if value and not _parse_destination(value):
            raise ValueError(f"LISTENER_SR_DESTINATION {value!r} is not AE@host:port")
        return value


def _parse_destination(value: str) -> tuple[str, str, int] | None:
    try:
        ae, address = value.split("@", 1)
        host, port = address.rsplit(":", 1)
        return (ae, host, int(port)) if ae and host else None
    except ValueError:
        return None


@dataclass
class Job:
    sop_uid: str
    data: bytes
    received: float = field(default_factory=time.monotonic)
    spooled: Path | None = None


@dataclass
class Stats:
    received: int = 0
    refused_queue_full: int = 0
    answered: int = 0  # the API answered 200 (verify or predict)
    mismatches: int = 0
    failed: int = 0  # gave up: the API refused the image, or retries ran out
    retries: int = 0
    sr_sent: int = 0
    sr_failed: int = 0


class Listener:
    """The Storage SCP, its queue and its workers; start() / stop()."""

    def __init__(self, settings: ListenerSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self.stats = Stats()
        self.results: dict[str, dict[str, Any]] = {}  # SOP Instance UID → last API answer
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        headers = {"X-API-Key": settings.api_key} if settings.api_key else {}
        self._client = client or httpx.Client(
            base_url=settings.api_url.rstrip("/"), timeout=settings.api_timeout_s, headers=headers
        )
        self._threads: list[threading.Thread] = []
        self._server = None

    # --- DICOM side -------------------------------------------------------------------------
    def start(self) -> Listener:
        """Listen for associations and start the workers (returns at once)."""
        from pynetdicom import AE, StoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.settings.ae_title)
        ae.supported_contexts = StoragePresentationContexts
        ae.add_supported_context(Verification)
        if self.settings.allowed_calling_aes:
            ae.require_calling_aet = self.settings.allowed_calling_aes
        if self.settings.spool_dir:
            self.settings.spool_dir.mkdir(parents=True, exist_ok=True)
            self._requeue_spool()
        for i in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"listener-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, lambda _event: SUCCESS)]
        self._server = ae.start_server(
            (self.settings.host, self.settings.port), block=False, evt_handlers=handlers
        )
        self.port = self._server.server_address[1]
        logger.info(
            "listening as %s on %s:%d; API %s; allowed calling AEs: %s; spool: %s; "
            "SR destination: %s",
            self.settings.ae_title,
            self.settings.host,
            self.port,
            self.settings.api_url,
            self.settings.allowed_calling_aes or "any",
            self.settings.spool_dir or "none (memory only)",
            self.settings.sr_destination or "none",
        )
        return self

    def _on_store(self, event: Any) -> int:
        """Answer at once; the API is called by a worker."""
        try:
            sop_uid = str(event.request.AffectedSOPInstanceUID)
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # noqa: BLE001 - a malformed dataset must not kill the association
            logger.warning("C-STORE with an undecodable dataset refused")
            return CANNOT_UNDERSTAND
        with self._cond:
            if len(self._queue) >= self.settings.queue_size:
                self.stats.refused_queue_full += 1
                logger.warning(
                    "queue full (%d, LISTENER_QUEUE_SIZE): C-STORE of %s refused "
                    "with 0xA700; the sender should retry",
                    len(self._queue),
                    sop_uid,
                )
                return OUT_OF_RESOURCES
            job = Job(sop_uid, data)
            if self.settings.spool_dir:
                job.spooled = self.settings.spool_dir / f"{sop_uid}.dcm"
                job.spooled.write_bytes(data)
            self._queue.append(job)
            self.stats.received += 1
            self._cond.notify()
        return SUCCESS

    def _requeue_spool(self) -> None:
        assert self.settings.spool_dir is not None
        for path in sorted(self.settings.spool_dir.glob("*.dcm")):
            self._queue.append(Job(path.stem, path.read_bytes(), spooled=path))
        if self._queue:
            logger.info("re-queued %d spooled images", len(self._queue))

    # --- API side ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
            self._process(job)

    def _post(self, path: str, job: Job) -> httpx.Response:
        files = {"file": ("image.dcm", job.data, "application/dicom")}
        return self._client.post(path, files=files)

    def _process(self, job: Job) -> None:
        wait = self.settings.retry_wait_s
        deadline = time.monotonic() + self.settings.retry_for_s
        path = "/v1/verify"
        while True:
            try:
                response = self._post(path, job)
                if (
                    response.status_code == 422
                    and path == "/v1/verify"
                    and response.json().get("code") == "nothing_to_verify"
                ):
                    path = "/v1/predict"  # no recorded sex/age: a plain prediction
                    continue
                if response.status_code not in RETRY_STATUSES:
                    break
                reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            if self._stopping or time.monotonic() + wait > deadline:
                self._give_up(
                    job,
                    f"API unavailable ({reason}) for "
                    f"{self.settings.retry_for_s:g} s (LISTENER_RETRY_FOR_S)",
                    keep_spooled=True,  # the API may come back: the next start re-queues it
                )
                return
            self.stats.retries += 1
            logger.warning("API %s for %s; retrying in %.1f s", reason, job.sop_uid, wait)
            time.sleep(wait)
            wait = min(wait * 2, 10.0)
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = response.text[:200]
            self._give_up(job, f"API answered {response.status_code}: {detail}")
            return
        answer = response.json()
        self.results[job.sop_uid] = answer
        self.stats.answered += 1
        check = answer.get("check")
        if check:
            if check["decision"] == "mismatch":
                self.stats.mismatches += 1
            logger.info(
                "%s: %s (score %.2f, threshold %.2f, mode %s)",
                job.sop_uid,
                check["decision"],
                check["score"],
                check["threshold"],
                check["mode"],
            )
        else:
            logger.info("%s: predicted (no recorded sex/age to check)", job.sop_uid)
        if self.settings.sr_destination:
            self._send_sr(job, answer)
        if job.spooled:
            job.spooled.unlink(missing_ok=True)

    def _give_up(self, job: Job, why: str, *, keep_spooled: bool = False) -> None:
        self.stats.failed += 1
        kept = keep_spooled and job.spooled is not None
        logger.error(
            "%s not checked: %s%s", job.sop_uid, why, " (kept in the spool folder)" if kept else ""
        )
        if job.spooled and not kept:
            job.spooled.unlink(missing_ok=True)

    def _send_sr(self, job: Job, answer: dict[str, Any]) -> None:
        import pydicom
        from pynetdicom import AE
        from pynetdicom.sop_class import ComprehensiveSRStorage

        from integrations.sr import build_sr

        ae_title, host, port = _parse_destination(self.settings.sr_destination)  # type: ignore[misc]
        try:
            source = pydicom.dcmread(io.BytesIO(job.data), stop_before_pixels=True)
            sr = build_sr(source, answer)
            ae = AE(ae_title=self.settings.ae_title)
            ae.add_requested_context(ComprehensiveSRStorage)
            assoc = ae.associate(host, port, ae_title=ae_title)
            if not assoc.is_established:
                raise ConnectionError(f"association with {self.settings.sr_destination} refused")
            try:
                status = assoc.send_c_store(sr)
            finally:
                assoc.release()
            if not status or status.Status != SUCCESS:
                raise ConnectionError(f"C-STORE status {getattr(status, 'Status', None)}")
            self.stats.sr_sent += 1
        except Exception as exc:  # noqa: BLE001 - the answer is kept; only the SR copy failed
            self.stats.sr_failed += 1
            logger.error(
                "SR for %s not sent to %s: %s", job.sop_uid, self.settings.sr_destination, exc
            )

    # --- lifecycle --------------------------------------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop accepting, give the workers `drain_s` to empty the queue, then stop them."""
        if self._server is not None:
            self._server.shutdown()
        deadline = time.monotonic() + drain_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._cond:
            left = len(self._queue)
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.settings.api_timeout_s)
        if left:
            logger.error(
                "stopped with %d images unchecked%s",
                left,
                " (kept in the spool folder)" if self.settings.spool_dir else "",
            )
        logger.info("stopped: %s", self.stats)


def main() -> None:
    """Entry point: settings from the environment, run until SIGTERM/SIGINT."""
    try:
        settings = ListenerSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"Config 'LISTENER_{'.'.join(map(str, e['loc'])).upper()}' has value "
            f"{e.get('input')!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise SystemExit(f"dicom_listener: {problems}") from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("pynetdicom", "highdicom", "httpx"):  # one line per image is ours to write
        logging.getLogger(noisy).setLevel(logging.WARNING)
    listener = Listener(settings).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    listener.stop()


if __name__ == "__main__":
    main()
