"""A real Orthanc (Debian package) with our Python plugin, talking to our API on loopback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.orthanc_scenario import ORTHANC, PLUGIN_SO
from tests.support.pacs import netns_available, run_in_netns
from tests.support.paths import MODELS, NIH

MISSING = [p for p in (ORTHANC, PLUGIN_SO) if not os.path.exists(p)]
pytestmark = [
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"Debian orthanc/orthanc-python missing: {MISSING} "
        "(scripts/system-deps.sh installs them)",
    ),
    pytest.mark.skipif(not NIH.is_dir(), reason=f"needs real images at {NIH}"),
]


def scenario(work: Path, trigger: str) -> dict:
    why = netns_available()
    if why:
        pytest.skip(
            f"Orthanc 1.10 binds every interface, so it runs in a loopback-only network "
            f"namespace; {why}"
        )
    out = work / "facts.json"
    proc = run_in_netns("tests.support.orthanc_scenario", str(out), str(work), trigger, timeout=240)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "error" not in result, f"{result['error']}\n{result['orthanc_log_tail']}"
    return result


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return scenario(tmp_path_factory.mktemp("orthanc"), "NewInstance")


def test_only_the_mislabelled_study_is_flagged(facts: dict) -> None:
    assert facts["correct"]["metadata"]["CxrVerifyDecision"] == "consistent"
    assert "CxrMismatch" not in facts["correct"]["metadata"]
    assert facts["wrong"]["metadata"]["CxrVerifyDecision"] == "mismatch"
    assert facts["wrong"]["metadata"]["CxrMismatch"] == "1"
    assert facts["stats"]["checked"] == 2 and facts["stats"]["mismatches"] == 1
    assert facts["stats"]["failed"] == 0
    assert "cxr_verify_mismatches 1" in " ".join(facts["prometheus"])


def test_attachment_holds_the_api_answer(facts: dict) -> None:
    for name in ("correct", "wrong"):
        attachment = facts[name]["attachment"]
        assert attachment["status"] == 200
        assert attachment["answer"]["recorded"]["sex_source"] == "dicom:PatientSex"
        assert attachment["answer"]["check"]["threshold_source"] == "card"
    assert (
        facts["wrong"]["attachment"]["answer"]["recorded"]["sex"]
        == facts["labels"]["mislabel"]["sex"]
    )


def test_sr_references_the_image_and_parses_back(facts: dict) -> None:
    for name in ("correct", "wrong"):
        sr = facts[name]["sr"]
        assert sr["referenced_sop_instance_uid"] == facts[name]["sop_instance_uid"]
        assert sr["verification_flag"] == "UNVERIFIED"
        assert "not for diagnostic use" in sr["series_description"]
        assert "cxr-age-sex" in sr["series_description"]
        assert sr["MM_DECISION"][0].startswith(facts[name]["metadata"]["CxrVerifyDecision"])
        assert facts[name]["sr_study_same"]
        card = json.loads((MODELS / "model.json").read_text())
        assert sr["equipment"] == [card["name"], card["version"]]
    # two images + two SRs; the SRs themselves were not sent to the API
    assert facts["instances_total"] == 4 and facts["stats"]["skipped"] == 2


def test_unreachable_api_is_recorded_on_the_instance(facts: dict) -> None:
    error = facts["api_down"]["CxrVerifyError"]
    assert error.startswith("HTTP 0: API at http://127.0.0.1:") and "unreachable" in error
    assert "CxrVerifyDecision" not in facts["api_down"]


def test_stable_study_trigger_checks_each_image_once(tmp_path: Path) -> None:
    facts = scenario(tmp_path, "StableStudy")
    assert facts["correct"]["metadata"]["CxrVerifyDecision"] == "consistent"
    assert facts["wrong"]["metadata"]["CxrMismatch"] == "1"
    # our SRs re-stabilise the studies: the images already checked are not sent again
    assert facts["stats"]["checked"] == 2 and facts["stats"]["sr_stored"] == 2
    assert facts["stats"]["skipped"] >= 2
