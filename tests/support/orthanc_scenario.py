"""Runs inside a loopback-only network namespace (test_orthanc.py starts it): our API + a real
Orthanc with the plugin; uploads a correctly labelled and a mislabelled CR study; writes what
Orthanc ended up holding as JSON for the test to check.

    python -m tests.support.orthanc_scenario OUT.json WORKDIR [NewInstance|StableStudy]
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from PIL import Image

from cxr.card import parse_card
from cxr.demographics import Recorded
from cxr.imaging import preprocess_bytes
from cxr.verify import MismatchParams, verify
from service.app import create_app
from service.settings import Settings
from tests.support.pacs import cr_dicom, free_port
from tests.support.paths import NIH, REPO

ORTHANC = "/usr/sbin/Orthanc"


class Done(Exception):
    """The variant has what it needs."""


PLUGIN_SO = "/usr/share/orthanc/plugins/libOrthancPython.so"


def pick_pair(model_dir: Path) -> tuple[dict, dict]:
    """Two NIH images of different patients where the committed model is sure of itself: A's own
    labels pass the check, B's labels on A's image are flagged."""
    import csv

    import onnxruntime as ort

    card = json.loads((model_dir / "model.json").read_text())
    params = MismatchParams.from_card(card)
    prep = parse_card(card).params
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    rows = list(csv.DictReader((NIH / "labels.csv").open()))[:120]
    x = np.stack([preprocess_bytes((NIH / "images" / r["image"]).read_bytes(), prep) for r in rows])
    ages, pms = session.run(["age", "p_male"], {"image": x})
    best = None
    for a, ra in enumerate(rows):
        own = Recorded(ra["sex"], "t", float(ra["age"]), "t")
        mine = verify(float(pms[a, 0]), float(ages[a, 0]), own, params)
        if mine.decision != "consistent":
            continue
        for rb in rows:
            if rb["patient_id"] == ra["patient_id"]:
                continue
            other = verify(
                float(pms[a, 0]),
                float(ages[a, 0]),
                Recorded(rb["sex"], "t", float(rb["age"]), "t"),
                params,
            )
            margin = min(other.score - other.threshold, mine.threshold - mine.score)
            if other.decision == "mismatch" and (best is None or margin > best[0]):
                best = (margin, ra, rb)
    if best is None:
        raise RuntimeError("no NIH pair where the committed model separates the labels")
    _, ra, rb = best
    return ra, rb


def dicom_of(row: dict, labels: dict, patient_id: str) -> bytes:
    grey = np.asarray(Image.open(NIH / "images" / row["image"]).convert("L"))
    return cr_dicom(
        grey,
        PatientID=patient_id,
        PatientSex=labels["sex"],
        PatientAge=f"{int(float(labels['age'])):03d}Y",
    )


def start_api(model_dir: Path) -> tuple[uvicorn.Server, str]:
    port = free_port()
    app = create_app(
        Settings(
            model_dir=model_dir,
            host="127.0.0.1",
            port=port,
            preprocess_threads=1,
            ort_intra_op_threads=1,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("API did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def orthanc_config(workdir: Path, api_url: str, http_port: int, trigger: str) -> Path:
    storage = workdir / "orthanc-db"
    storage.mkdir(parents=True, exist_ok=True)
    site = next(p for p in sys.path if p.endswith("site-packages"))
    config = json.loads((REPO / "integrations" / "orthanc" / "orthanc.json").read_text())
    config.update(
        {
            "Name": "cxr-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": http_port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [PLUGIN_SO],
            "PythonScript": str(REPO / "integrations" / "orthanc" / "cxr_plugin.py"),
        }
    )
    config["CxrVerify"].update(
        {
            "ApiUrl": api_url,
            "PythonPath": [str(REPO), site],
            "RetryWaitSeconds": 0.2,
            "Trigger": trigger,
        }
    )
    config["StableAge"] = 1  # seconds without new images before a study counts as stable
    path = workdir / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def main(out: str, workdir: str, trigger: str = "NewInstance") -> int:
    work = Path(workdir)
    model_dir = REPO / "models"
    row_a, row_b = pick_pair(model_dir)
    correct = dicom_of(row_a, row_a, "PAT-A")
    wrong = dicom_of(row_a, row_b, "PAT-B")  # A's image filed under B's sex and age
    api, api_url = start_api(model_dir)
    port = free_port()
    log = (work / "orthanc.log").open("w")
    orthanc = subprocess.Popen(
        [ORTHANC, str(orthanc_config(work, api_url, port, trigger))],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    facts: dict = {
        "labels": {
            "image": {"sex": row_a["sex"], "age": row_a["age"]},
            "mislabel": {"sex": row_b["sex"], "age": row_b["age"]},
        }
    }
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get("/system").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or orthanc.poll() is not None:
                    raise RuntimeError("Orthanc did not start") from None
                time.sleep(0.2)
        ids = {
            name: client.post("/instances", content=data).json()["ID"]
            for name, data in (("correct", correct), ("wrong", wrong))
        }
        deadline = time.monotonic() + 90
        while True:
            stats = client.get("/cxr-verify/stats").json()
            if stats["checked"] + stats["failed"] >= 2 and stats["pending"] == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"plugin did not finish: {stats}")
            time.sleep(0.3)
        if trigger == "StableStudy":  # our SRs make the studies unstable again, then stable
            time.sleep(3.0)
            stats = client.get("/cxr-verify/stats").json()
        facts["stats"] = stats
        for name, iid in ids.items():
            meta = client.get(f"/instances/{iid}/metadata", params={"expand": ""}).json()
            attachment = client.get(f"/instances/{iid}/attachments/cxr-verify/data").json()
            sop = client.get(f"/instances/{iid}/simplified-tags").json()["SOPInstanceUID"]
            entry = {
                "metadata": {k: v for k, v in meta.items() if k.startswith("Cxr")},
                "attachment": attachment,
                "sop_instance_uid": sop,
            }
            if "CxrVerifySr" in meta:
                from integrations.sr import read_result

                sr_id = meta["CxrVerifySr"]
                entry["sr"] = read_result(client.get(f"/instances/{sr_id}/file").content)
                entry["sr_study_same"] = (
                    client.get(f"/instances/{sr_id}/study").json()["ID"]
                    == client.get(f"/instances/{iid}/study").json()["ID"]
                )
            facts[name] = entry
        flagged = client.post(
            "/tools/find", json={"Level": "Instance", "Query": {}, "Expand": False}
        ).json()
        facts["instances_total"] = len(flagged)
        facts["prometheus"] = [
            ln
            for ln in client.get("/tools/metrics-prometheus").text.splitlines()
            if ln.startswith("cxr_verify")
        ]
        if trigger == "StableStudy":
            raise Done
        # The API goes away: the plugin retries (Retries × RetryWaitSeconds, doubling), then
        # records why on the instance instead of losing it silently.
        api.should_exit = True
        time.sleep(1.0)
        orphan = client.post("/instances", content=dicom_of(row_a, row_a, "PAT-C")).json()["ID"]
        deadline = time.monotonic() + 60
        while client.get("/cxr-verify/stats").json()["failed"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("plugin did not give up on the unreachable API")
            time.sleep(0.3)
        meta = client.get(f"/instances/{orphan}/metadata", params={"expand": ""}).json()
        facts["api_down"] = {k: v for k, v in meta.items() if k.startswith("Cxr")}
    except Done:
        pass
    except Exception as exc:  # noqa: BLE001 - reported to the test with the Orthanc log
        facts["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        orthanc.terminate()
        try:
            orthanc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            orthanc.kill()
        api.should_exit = True
        log.close()
    facts["orthanc_log_tail"] = (work / "orthanc.log").read_text()[-3000:]
    Path(out).write_text(json.dumps(facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
