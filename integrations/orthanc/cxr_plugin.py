"""Orthanc Python plugin: every new image goes to the cxr-age-sex API's POST /v1/verify.

Loaded by Orthanc's Python plugin ("PythonScript" in orthanc.json). The model never runs inside
Orthanc: the plugin sends the stored DICOM file to the API over HTTP, from one worker thread fed
by a bounded queue, so Orthanc's own threads never wait on the API. For each image it writes back

- instance metadata  CxrVerifyDecision ("consistent" | "mismatch"), CxrVerifyScore, and
  CxrMismatch = "1" only when flagged (find flagged images with a /tools/find on it);
  CxrVerifyError with a sentence when the check could not be done;
- the whole API answer as a JSON attachment named "cxr-verify";
- a DICOM Comprehensive SR (integrations/sr.py, highdicom) stored into the same study, which
  references the image, is UNVERIFIED and names the model, "not for diagnostic use".

Counters at GET /cxr-verify/stats and as Orthanc metrics (cxr_verify_checked, _mismatches,
_failed) in /tools/metrics-prometheus. Configuration: the "CxrVerify" section of orthanc.json
(docs/pacs.md lists every key). Images the API cannot verify (no recorded sex/age) still get an
answer stored as CxrVerifyError. SR, presentation states and other non-image objects are skipped.
"""

from __future__ import annotations

import io
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import orthanc  # provided by Orthanc's Python plugin

CONFIG = json.loads(orthanc.GetConfiguration()).get("CxrVerify", {})
API_URL = str(CONFIG.get("ApiUrl", "http://127.0.0.1:8000")).rstrip("/")
API_KEY = CONFIG.get("ApiKey") or None
TIMEOUT_S = float(CONFIG.get("TimeoutSeconds", 30))
RETRIES = int(CONFIG.get("Retries", 5))  # attempts while the API is down, overloaded or starting
RETRY_WAIT_S = float(CONFIG.get("RetryWaitSeconds", 1.0))  # doubles per attempt, capped at 30 s
QUEUE_SIZE = int(CONFIG.get("QueueSize", 1000))
STORE_SR = bool(CONFIG.get("StoreSR", True))
MODALITIES = set(CONFIG.get("Modalities", ["CR", "DX", "DR", "OT", "RG"]))
# "NewInstance": each image as it arrives; "StableStudy": a study's images once it has received
# nothing for Orthanc's StableAge seconds (images already checked are not sent again).
TRIGGER = str(CONFIG.get("Trigger", "NewInstance"))
if TRIGGER not in ("NewInstance", "StableStudy"):
    raise ValueError(f"CxrVerify.Trigger has value {TRIGGER!r}; use NewInstance or StableStudy")
for path in CONFIG.get("PythonPath", []):  # where integrations/ and highdicom live
    if path not in sys.path:
        sys.path.append(path)

ATTACHMENT = "cxr-verify"
SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."  # every Structured Report storage class
RETRY_STATUSES = {429, 502, 503, 504}
STOP = object()

_jobs: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
_stats = {
    "queued": 0,
    "checked": 0,
    "mismatches": 0,
    "failed": 0,
    "skipped": 0,
    "dropped": 0,
    "sr_stored": 0,
}
_lock = threading.Lock()


def _count(key: str) -> None:
    with _lock:
        _stats[key] += 1
        value = _stats[key]
    if key in ("checked", "mismatches", "failed"):
        try:
            orthanc.SetMetricsValue(f"cxr_verify_{key}", float(value), orthanc.MetricsType.DEFAULT)
        except Exception as exc:  # noqa: BLE001 - metrics are best effort (older Orthanc)
            orthanc.LogWarning(f"cxr-verify: metric not published: {exc}")


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="image.dcm"\r\nContent-Type: application/dicom\r\n\r\n'
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def call_api(data: bytes) -> tuple[int, dict]:
    """POST /v1/verify; retries while the API is unreachable or answers 429/5xx-transient."""
    body, boundary = _multipart(data)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if API_KEY:
        headers["X-API-Key"] = API_KEY
    wait = RETRY_WAIT_S
    for attempt in range(1, RETRIES + 1):
        request = urllib.request.Request(
            f"{API_URL}/v1/verify", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            if exc.code not in RETRY_STATUSES or attempt == RETRIES:
                try:
                    return exc.code, json.loads(payload)
                except ValueError:
                    return exc.code, {"detail": payload[:200].decode("utf-8", "replace")}
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            if attempt == RETRIES:
                return 0, {"detail": f"API at {API_URL} unreachable: {exc}"}
            reason = str(exc)
        orthanc.LogWarning(
            f"cxr-verify: API attempt {attempt}/{RETRIES} failed ({reason}); retrying in {wait:g} s"
        )
        time.sleep(wait)
        wait = min(wait * 2, 30.0)
    return 0, {"detail": "no attempt made"}


def _put_metadata(instance: str, name: str, value: str) -> None:
    orthanc.RestApiPut(f"/instances/{instance}/metadata/{name}", value)


def store_sr(data: bytes, answer: dict) -> str:
    """Build the SR (highdicom, in this process) and store it in Orthanc; its Orthanc id."""
    import pydicom

    from integrations.sr import build_sr, encode

    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    stored = json.loads(orthanc.RestApiPost("/instances", encode(build_sr(source, answer))))
    return stored["ID"]


def process(instance: str) -> None:
    """One stored instance: check, write metadata + attachment (+ SR)."""
    tags = json.loads(orthanc.RestApiGet(f"/instances/{instance}/simplified-tags"))
    done = json.loads(orthanc.RestApiGet(f"/instances/{instance}/metadata"))
    if "CxrVerifyDecision" in done or "CxrVerifyError" in done:  # e.g. a study stable again
        _count("skipped")
        return
    if (
        str(tags.get("SOPClassUID", "")).startswith(SR_CLASS_PREFIX)
        or tags.get("Modality") not in MODALITIES
    ):
        _count("skipped")
        return
    data = orthanc.RestApiGet(f"/instances/{instance}/file")
    status, answer = call_api(data)
    orthanc.RestApiPut(
        f"/instances/{instance}/attachments/{ATTACHMENT}",
        json.dumps({"status": status, "answer": answer}),
    )
    if status != 200:
        _count("failed")
        detail = str(answer.get("detail", answer))[:500]
        _put_metadata(instance, "CxrVerifyError", f"HTTP {status}: {detail}")
        orthanc.LogWarning(f"cxr-verify: instance {instance} not checked: HTTP {status}")
        return
    check = answer["check"]
    _put_metadata(instance, "CxrVerifyDecision", check["decision"])
    _put_metadata(instance, "CxrVerifyScore", f"{check['score']:.4f}")
    _count("checked")
    if check["decision"] == "mismatch":
        _put_metadata(instance, "CxrMismatch", "1")
        _count("mismatches")
        orthanc.LogWarning(
            f"cxr-verify: possible wrong patient: instance {instance} "
            f"(score {check['score']:.2f} ≥ {check['threshold']:.2f})"
        )
    if STORE_SR:
        sr_id = store_sr(data, answer)
        _put_metadata(instance, "CxrVerifySr", sr_id)
        _count("sr_stored")


def worker() -> None:
    while True:
        instance = _jobs.get()
        if instance is STOP:
            return
        try:
            if isinstance(instance, tuple):  # ("study", id): its images, now that it is stable
                for item in json.loads(orthanc.RestApiGet(f"/studies/{instance[1]}/instances")):
                    process(item["ID"])
            else:
                process(instance)
        except Exception as exc:  # noqa: BLE001 - one bad instance must not stop the worker
            _count("failed")
            orthanc.LogError(f"cxr-verify: instance {instance}: {type(exc).__name__}: {exc}")
            try:
                _put_metadata(instance, "CxrVerifyError", f"{type(exc).__name__}: {exc}"[:500])
            except Exception:  # noqa: BLE001 - the instance may be gone
                orthanc.LogWarning(
                    f"cxr-verify: instance {instance} gone before its error could be recorded"
                )


_thread = threading.Thread(target=worker, name="cxr-verify", daemon=True)


def on_change(change_type, level, resource) -> None:
    job = None
    if change_type == orthanc.ChangeType.NEW_INSTANCE and TRIGGER == "NewInstance":
        job = resource
    elif change_type == orthanc.ChangeType.STABLE_STUDY and TRIGGER == "StableStudy":
        job = ("study", resource)
    if job is not None:
        try:
            _jobs.put_nowait(job)
            _count("queued")
        except queue.Full:
            _count("dropped")
            orthanc.LogError(
                f"cxr-verify: queue full ({QUEUE_SIZE}); instance {resource} "
                "not checked (CxrVerify.QueueSize)"
            )
    elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
        _thread.start()
        orthanc.LogWarning(f"cxr-verify: sending images to {API_URL}/v1/verify ({TRIGGER})")
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        _jobs.put(STOP)


def on_stats(output, uri, **request) -> None:
    with _lock:
        body = dict(_stats, pending=_jobs.qsize())
    output.AnswerBuffer(json.dumps(body), "application/json")


orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterRestCallback("/cxr-verify/stats", on_stats)
