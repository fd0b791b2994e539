"""The "check identity" page against the real API (committed model, its card's mismatch section)."""

from __future__ import annotations

import io
import re

import httpx
from flask.testing import FlaskClient

from tests.support.images import sample_dicom, sample_png


def token(client: FlaskClient) -> str:
    page = client.get("/check")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match
    return match.group(1)


def submit(client: FlaskClient, data: bytes, **fields: str):
    form = {"file": (io.BytesIO(data), "x.png"), "csrf_token": token(client), **fields}
    return client.post("/check", data=form, content_type="multipart/form-data")


def test_typed_values_side_by_side_with_the_apis_decision(
    client: FlaskClient, api_url: str
) -> None:
    image = sample_png(0)
    predicted = httpx.post(f"{api_url}/v1/predict", files={"file": ("x.png", image)}).json()
    other = "F" if predicted["sex"] == "male" else "M"
    expected = httpx.post(
        f"{api_url}/v1/verify",
        files={"file": ("x.png", image)},
        data={"expected_sex": other, "expected_age": "20"},
    ).json()
    page = submit(client, image, expected_sex=other, expected_age="20")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    heading = (
        "Possible wrong patient"
        if expected["check"]["decision"] == "mismatch"
        else "No disagreement found"
    )
    assert heading in html
    assert f"{expected['check']['score']:.2f}" in html and "form:expected_sex" in html
    assert "20.0 years" in html and "not for clinical use" in html
    assert 'src="data:image/png;base64,' in html


def test_dicom_header_values_are_used_and_named(client: FlaskClient) -> None:
    page = submit(client, sample_dicom(0))  # its header: PatientSex F, PatientAge 054Y
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "dicom:PatientSex" in html and "dicom:PatientAge" in html and "54.0 years" in html


def test_image_without_typed_values_says_what_is_missing(client: FlaskClient) -> None:
    page = submit(client, sample_png(0))
    assert page.status_code == 422
    assert "nothing to compare" in page.get_data(as_text=True)


def test_bad_typed_age_is_named(client: FlaskClient) -> None:
    page = submit(client, sample_png(1), expected_age="999")
    assert page.status_code == 400 and "999" in page.get_data(as_text=True)


def test_form_needs_csrf(client: FlaskClient) -> None:
    page = client.post(
        "/check",
        data={"file": (io.BytesIO(sample_png(0)), "x.png")},
        content_type="multipart/form-data",
    )
    assert page.status_code in (400, 403)
