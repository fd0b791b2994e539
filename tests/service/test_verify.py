"""/v1/verify: the wrong-patient check on a real server, with hostile recorded values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.settings import Settings
from tests.support.images import encode
from tests.support.models import make_model_dir, write_card
from tests.support.pacs import MISMATCH, cr_dicom
from tests.support.servers import RunningServer

BRIGHT = 210  # tiny model: p_male = sigmoid((mean − 100)/20) ≈ 1, age = 0.3·mean + 10 ≈ 70


def grey(level: int = BRIGHT, size: int = 96) -> np.ndarray:
    """A flat grey square with a darker frame (border cropping keeps the inside)."""
    img = np.full((size, size), level, np.uint8)
    img[40:56, 40:56] = max(level - 40, 0)  # not perfectly constant
    return img


@pytest.fixture(scope="module")
def verify_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    model_dir = make_model_dir(tmp_path_factory.mktemp("verify-model"))
    write_card(model_dir, mismatch=MISMATCH)
    server = RunningServer(
        Settings(
            model_dir=model_dir,
            host="127.0.0.1",
            port=0,
            preprocess_threads=1,
            ort_intra_op_threads=1,
        )
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def post(verify_server: RunningServer) -> Callable[..., httpx.Response]:
    client = httpx.Client(base_url=verify_server.url, timeout=20)

    def send(data: bytes, **form: str) -> httpx.Response:
        return client.post("/v1/verify", files={"file": ("x", data)}, data=form)

    yield send
    client.close()


def test_consistent_dicom_from_tags(post: Callable[..., httpx.Response]) -> None:
    r = post(cr_dicom(grey(), PatientSex="M", PatientAge="070Y"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["check"]["decision"] == "consistent" and body["check"]["mode"] == "both"
    assert body["recorded"] == {
        "sex": "M",
        "sex_source": "dicom:PatientSex",
        "age_years": 70.0,
        "age_source": "dicom:PatientAge",
    }
    assert body["check"]["threshold"] == 4.0 and body["check"]["false_alarm_rate"] == 0.01
    assert body["check"]["threshold_source"] == "card" and body["skipped"] == []
    assert body["predicted"]["sex"] == "male" and "not for clinical use" in body["disclaimer"]


def test_other_patients_values_are_flagged(post: Callable[..., httpx.Response]) -> None:
    body = post(cr_dicom(grey(), PatientSex="F", PatientAge="020Y")).json()
    assert body["check"]["decision"] == "mismatch"
    assert body["check"]["sex_score"] > 3 and body["check"]["age_score"] > 2
    assert body["check"]["age_residual_years"] == pytest.approx(20 - body["predicted"]["age_years"])


def test_form_values_override_tags_and_birth_dates(post: Callable[..., httpx.Response]) -> None:
    body = post(
        cr_dicom(grey(), PatientSex="F", PatientAge="020Y"),
        expected_sex="male",
        expected_birth_date="1956-03-01",
        study_date="20260301",
    ).json()
    assert body["check"]["decision"] == "consistent"
    assert body["recorded"]["sex_source"] == "form:expected_sex"
    assert body["recorded"]["age_source"] == "form:expected_birth_date+study_date"
    assert body["recorded"]["age_years"] == pytest.approx(70.0, abs=0.01)
    body = post(
        cr_dicom(grey(), PatientSex="M", PatientBirthDate="19560301", StudyDate="20260301")
    ).json()
    assert body["recorded"]["age_source"] == "dicom:PatientBirthDate+StudyDate"


def test_png_with_expected_values(post: Callable[..., httpx.Response]) -> None:
    body = post(encode(grey()), expected_sex="F").json()
    assert body["check"]["mode"] == "sex" and body["check"]["decision"] == "mismatch"
    assert any("age check skipped" in n for n in body["skipped"])


@pytest.mark.parametrize(
    ("form", "named"),
    [
        ({"expected_age": "999"}, "'999'"),
        ({"expected_age": "12X"}, "'12X'"),
        ({"expected_age": "-3"}, "'-3'"),
        ({"expected_age": "nan"}, "'nan'"),
        ({"expected_sex": "X"}, "'X'"),
        ({"expected_birth_date": "20251340", "study_date": "20260101"}, "'20251340'"),
        ({"expected_birth_date": "1990-01-01", "study_date": "19800101"}, "before"),
        ({"expected_birth_date": "19900101"}, "go together"),
        ({"expected_age": "4" * 65}, "limit is 64"),
    ],
)
def test_bad_typed_values_are_400_naming_them(
    post: Callable[..., httpx.Response], form: dict, named: str
) -> None:
    r = post(encode(grey()), **form)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "bad_request" and named in r.json()["detail"]


def test_nothing_to_compare_is_422(post: Callable[..., httpx.Response]) -> None:
    r = post(encode(grey()))
    assert r.status_code == 422 and r.json()["code"] == "nothing_to_verify"
    assert "png, not DICOM" in r.json()["detail"]
    r = post(cr_dicom(grey(), PatientSex="O", PatientAge="12X"))
    assert r.status_code == 422
    assert "'O'" in r.json()["detail"] and "'12X'" in r.json()["detail"]
    r = post(encode(grey()), expected_sex="O")
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("tags", "mode", "note"),
    [
        ({"PatientSex": "M", "PatientAge": "999Y"}, "sex", "'999Y'"),
        ({"PatientSex": "M", "PatientAge": "12X"}, "sex", "'12X'"),
        ({"PatientSex": "O", "PatientAge": "070Y"}, "age", "'O'"),
        ({"PatientAge": "070Y"}, "age", "no PatientSex"),
        (
            {"PatientSex": "M", "PatientBirthDate": "19991399", "StudyDate": "20260101"},
            "sex",
            "'19991399'",
        ),
        (
            {"PatientSex": "M", "PatientBirthDate": "20300101", "StudyDate": "20260101"},
            "sex",
            "before",
        ),
        ({"PatientSex": "M"}, "sex", "no PatientAge"),
    ],
)
def test_bad_tags_give_a_partial_answer(
    post: Callable[..., httpx.Response], tags: dict, mode: str, note: str
) -> None:
    r = post(cr_dicom(grey(), **tags))
    assert r.status_code == 200, r.text
    assert r.json()["check"]["mode"] == mode
    assert any(note in n for n in r.json()["skipped"]), r.json()["skipped"]


def test_broken_files_are_4xx_never_5xx(post: Callable[..., httpx.Response]) -> None:
    magic_only = b"\x00" * 128 + b"DICM" + b"\xff" * 64
    for data in (magic_only, b"%PDF-1.4 junk", cr_dicom(grey())[:400]):
        r = post(data, expected_sex="M", expected_age="40")
        assert 400 <= r.status_code < 500, (r.status_code, r.text)


def test_metrics_count_checks_and_flags(
    verify_server: RunningServer, post: Callable[..., httpx.Response]
) -> None:
    post(cr_dicom(grey(), PatientSex="F", PatientAge="020Y"))
    text = httpx.get(f"{verify_server.url}/metrics").text
    assert 'cxr_verify_checks_total{decision="mismatch",mode="both"}' in text
    flags = [ln for ln in text.splitlines() if ln.startswith("cxr_verify_flags_total ")]
    assert flags and float(flags[0].split()[1]) >= 1


def test_fallback_and_unsupported_cards(serve, tmp_path: Path) -> None:
    model_dir = make_model_dir(tmp_path / "fallback")
    write_card(
        model_dir,
        metrics={"validation": {"age_mae": 5.0}, "baselines": {"validation": {"age_mae": 15.0}}},
    )
    server = serve(Settings(model_dir=model_dir, host="127.0.0.1", port=0, preprocess_threads=1))
    r = httpx.post(
        f"{server.url}/v1/verify",
        timeout=20,
        files={"file": ("x", cr_dicom(grey(), PatientSex="F", PatientAge="020Y"))},
    )
    assert r.status_code == 200, r.text
    assert r.json()["check"]["threshold_source"].startswith("fallback")
    assert r.json()["check"]["decision"] == "mismatch"
    bare = make_model_dir(tmp_path / "bare")  # no mismatch section, no metrics: sex part only
    server = serve(Settings(model_dir=bare, host="127.0.0.1", port=0, preprocess_threads=1))
    r = httpx.post(
        f"{server.url}/v1/verify",
        timeout=20,
        files={"file": ("x", cr_dicom(grey(), PatientSex="F", PatientAge="020Y"))},
    )
    assert r.status_code == 200, r.text
    assert r.json()["check"]["mode"] == "sex" and r.json()["check"]["decision"] == "mismatch"
    assert any("no age error statistics" in n for n in r.json()["skipped"])
    r = httpx.post(
        f"{server.url}/v1/verify",
        timeout=20,
        files={"file": ("x", cr_dicom(grey(), PatientAge="020Y"))},
    )
    assert r.status_code == 422 and "no age error statistics" in r.json()["detail"]


def test_hostile_corpus_gets_the_same_named_refusals(post: Callable[..., httpx.Response]) -> None:
    """Every crafted file of the hostile corpus: the /v1/predict status, never a 5xx."""
    from scripts.make_hostile_corpus import hostile_cases

    for case in hostile_cases():
        r = post(case.data, expected_sex="M", expected_age="40")
        assert r.status_code == case.status, (case.name, r.status_code, r.text[:200])
        assert case.needle.lower() in r.json()["detail"].lower(), (case.name, r.text[:200])


def test_huge_header_values_are_cut_short_in_messages(post: Callable[..., httpx.Response]) -> None:
    r = post(cr_dicom(grey(), PatientSex="M", PatientAge="9" * 5000))
    assert r.status_code == 200 and len(r.text) < 3000
    assert any("(5000 chars)" in n for n in r.json()["skipped"])


def v2_infer(server: RunningServer, images: list[bytes], **columns: list[float]) -> httpx.Response:
    import base64

    inputs = [
        {
            "name": "image_bytes",
            "datatype": "BYTES",
            "shape": [len(images)],
            "data": [base64.b64encode(b).decode() for b in images],
        }
    ]
    inputs += [
        {"name": name, "datatype": "FP32", "shape": [len(values), 1], "data": values}
        for name, values in columns.items()
    ]
    return httpx.post(
        f"{server.url}/v2/models/cxr-age-sex/infer", json={"inputs": inputs}, timeout=20
    )


def test_oip_v2_takes_recorded_values_and_answers_the_check(verify_server: RunningServer) -> None:
    meta = httpx.get(f"{verify_server.url}/v2/models/cxr-age-sex").json()
    assert {"expected_male", "expected_age"} <= {i["name"] for i in meta["inputs"]}
    assert {"mismatch_score", "mismatch"} <= {o["name"] for o in meta["outputs"]}
    image = encode(grey())
    r = v2_infer(
        verify_server, [image] * 3, expected_male=[1.0, 0.0, -1.0], expected_age=[85.0, 20.0, -1.0]
    )
    assert r.status_code == 200, r.text
    out = {o["name"]: o["data"] for o in r.json()["outputs"]}
    assert out["mismatch"] == [0, 1, 0]
    assert out["mismatch_threshold"][:2] == [4.0, 4.0]
    assert out["mismatch_checked"] == [1, 1, 0] and out["mismatch_score"][2] == 0.0
    # without the extra inputs, v2 answers exactly as before
    plain = v2_infer(verify_server, [image]).json()
    assert {o["name"] for o in plain["outputs"]} == {"age", "p_male"}


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        ({"expected_male": [2.0]}, "expected_male[0] is 2"),
        ({"expected_age": [999.0]}, "expected_age[0] is 999"),
        ({"expected_age": [40.0, 50.0]}, "has shape [2, 1]"),
    ],
)
def test_oip_v2_bad_recorded_values_are_400(
    verify_server: RunningServer, columns: dict, named: str
) -> None:
    r = v2_infer(verify_server, [encode(grey())], **columns)
    assert r.status_code == 400 and named in r.json()["detail"], r.text
