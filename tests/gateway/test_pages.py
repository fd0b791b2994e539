"""The web app against a real running inference API (subprocess) serving a real ONNX model."""

from __future__ import annotations

import base64
import csv
import io
import re

import httpx
from flask.testing import FlaskClient
from markupsafe import escape

from tests.support.http import csrf_token, post_files
from tests.support.images import sample_dicom, sample_png, sample_tiff

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def api_prediction(api_url: str, data: bytes) -> dict:
    """What the API itself says about `data` (the page must show the same)."""
    response = httpx.post(f"{api_url}/v1/predict", files={"file": ("x.png", data, "image/png")})
    assert response.status_code == 200, response.text
    return response.json()


def thumbnails(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def csv_rows(html: str) -> list[dict[str, str]]:
    uri = re.search(r'href="data:text/csv;charset=utf-8;base64,([^"]+)"', html)
    assert uri, "no CSV download link"
    return list(csv.DictReader(io.StringIO(base64.b64decode(uri.group(1)).decode("utf-8"))))


def test_single_upload_shows_the_apis_age_sex_model_and_thumbnail(
    client: FlaskClient, api_url: str
) -> None:
    image = sample_png(0)
    expected = api_prediction(api_url, image)
    card = httpx.get(f"{api_url}/v1/models").json()

    response = post_files(client, [(image, "chest.png")])
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert f"{round(expected['age_years'])} years" in html
    assert expected["sex"].capitalize() in html
    assert f"P(male) {expected['p_male']:.2f}" in html
    assert card["name"] in html and f"version {card['version']}" in html
    assert "Research demo, not for clinical use." in html
    [thumb] = thumbnails(html)
    assert thumb.startswith(PNG_MAGIC)
    [row] = csv_rows(html)
    assert row["file"] == "chest.png" and row["status"] == "ok"
    assert abs(float(row["age_years"]) - expected["age_years"]) < 0.051
    assert abs(float(row["p_male"]) - expected["p_male"]) < 0.0051


def test_multi_upload_with_one_bad_file_keeps_the_others(client: FlaskClient, api_url: str) -> None:
    good = [sample_png(1), sample_png(2)]
    expected = [api_prediction(api_url, g) for g in good]
    files = [
        (good[0], "first.png"),
        (b"%PDF-1.7 not an image", "report.png"),
        (good[1], "third.png"),
    ]

    response = post_files(client, files)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    rows = re.findall(
        r'<tr class="result (result-ok|result-error)" data-index="(\d)">(.*?)</tr>',
        html,
        flags=re.DOTALL,
    )
    assert [(kind, int(i)) for kind, i, _ in rows] == [
        ("result-ok", 0),
        ("result-error", 1),
        ("result-ok", 2),
    ]
    assert f"{round(expected[0]['age_years'])} years" in rows[0][2]
    assert f"{round(expected[1]['age_years'])} years" in rows[2][2]
    assert "report.png" in rows[1][2] and "415" in rows[1][2]
    assert "pdf" in rows[1][2].lower()  # the API's own message, naming what it found
    assert len(thumbnails(html)) == 2
    table = csv_rows(html)
    assert [r["file"] for r in table] == ["first.png", "report.png", "third.png"]
    assert [r["status"] for r in table] == ["ok", "error", "ok"]
    assert table[1]["error_code"] == "unsupported_media_type"


def test_dicom_and_tiff_get_png_thumbnails_and_predictions(
    client: FlaskClient, api_url: str
) -> None:
    files = [(sample_dicom(7), "IM000001"), (sample_tiff(8), "scan.tif")]
    expected = [api_prediction(api_url, data) for data, _ in files]
    html = post_files(client, files).get_data(as_text=True)
    assert html.count('class="result result-ok"') == 2
    for e in expected:
        assert f"{round(e['age_years'])} years" in html
    thumbs = thumbnails(html)
    assert len(thumbs) == 2 and all(t.startswith(PNG_MAGIC) for t in thumbs)


def test_hostile_file_name_from_the_real_api_is_escaped(client: FlaskClient) -> None:
    name = "<script>alert(1)</script>.png"
    html = post_files(client, [(sample_png(), name), (b"not an image", name)]).get_data(
        as_text=True
    )
    assert "<script>alert(1)" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;.png") >= 2


def test_model_page_shows_card_metrics_and_baselines(client: FlaskClient, api_url: str) -> None:
    card = httpx.get(f"{api_url}/v1/models").json()
    response = client.get("/model")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert card["name"] in html and card["version"] in html
    assert card.get("disclaimer", "Research demo, not for clinical use.") in html
    test_metrics = card.get("metrics", {}).get("test", {})
    if "age_mae" in test_metrics:
        assert f"{test_metrics['age_mae']:.1f} years" in html
        baseline = card["metrics"]["baselines"]["test"]["age_mae"]
        assert f"{baseline:.1f} years" in html
    if card.get("intended_use"):
        assert str(escape(card["intended_use"])) in html


def test_health_indicator_and_json(client: FlaskClient) -> None:
    assert "API ready" in client.get("/").get_data(as_text=True)
    assert client.get("/api/health").json == {"api": "ready"}
    assert client.get("/healthz").json == {"status": "ok"}


def test_json_proxy_single_batch_and_raw(client: FlaskClient, api_url: str) -> None:
    image = sample_png(3)
    expected = api_prediction(api_url, image)
    single = client.post(
        "/api/predict",
        data={"file": (io.BytesIO(image), "a.png")},
        content_type="multipart/form-data",
    )
    assert single.status_code == 200
    assert abs(single.json["age_years"] - expected["age_years"]) < 1e-3
    raw = client.post("/api/predict", data=image, content_type="image/png")
    assert raw.status_code == 200 and raw.json["sex"] == expected["sex"]
    # What `curl --data-binary @x.png` sends: an image labelled as a form.
    curl = client.post("/api/predict", data=image, content_type="application/x-www-form-urlencoded")
    assert curl.status_code == 200 and abs(curl.json["age_years"] - expected["age_years"]) < 1e-3
    batch = client.post(
        "/api/predict",
        data={"files": [(io.BytesIO(image), "a.png"), (io.BytesIO(b"GIF89a"), "b.gif")]},
        content_type="multipart/form-data",
    )
    assert batch.status_code == 200
    assert [r["ok"] for r in batch.json["results"]] == [True, False]
    bad = client.post("/api/predict", data=b"%PDF-1.4", content_type="application/pdf")
    assert bad.status_code == 415 and bad.json["code"] == "unsupported_media_type"


def test_file_names_reach_neither_log(client: FlaskClient, api_server, caplog) -> None:
    name = "Doe-Jane-19570412-chest.png"
    with caplog.at_level("DEBUG"):
        post_files(client, [(sample_png(), name), (b"%PDF", name)])
        client.post(
            "/api/predict",
            data={"file": (io.BytesIO(b"%PDF"), name)},
            content_type="multipart/form-data",
        )
    _, api_log = api_server
    assert "Doe-Jane" not in caplog.text
    assert "Doe-Jane" not in api_log.read_text(errors="replace")


def test_csrf_token_is_needed_with_the_real_api_too(client: FlaskClient) -> None:
    csrf_token(client)
    assert post_files(client, [(sample_png(), "a.png")], token=None).status_code == 400
