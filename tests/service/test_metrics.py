"""/metrics: valid Prometheus text (promtool), the promised series, low-cardinality labels."""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest

from tests.support.http import scrape
from tests.support.images import encode, xray_array

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def exercise(url: str) -> None:
    httpx.post(f"{url}/v1/predict", files={"file": ("a.png", encode(xray_array(seed=1)))})
    httpx.post(f"{url}/v1/predict", content=b"%PDF-1.4")
    httpx.post(f"{url}/v1/predict/batch", files=[("files", ("b.png", encode(xray_array(seed=2))))])
    httpx.get(f"{url}/v2/models/cxr-age-sex")
    httpx.get(f"{url}/v2/models/some-other-name")
    httpx.get(f"{url}/no/such/path/12345")


@pytest.mark.skipif(
    shutil.which("promtool") is None and not os.path.exists(PROMTOOL),
    reason="promtool not installed (scripts/system-deps.sh installs it)",
)
def test_promtool_check_metrics_passes(server) -> None:
    exercise(server.url)
    text = httpx.get(f"{server.url}/metrics").text
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promised_series_present(server) -> None:
    exercise(server.url)
    m = scrape(server.url)
    assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=200}"] == 1
    assert m["cxr_requests_total{endpoint=/v1/predict,method=POST,status=415}"] == 1
    assert m["cxr_requests_total{endpoint=/v2/models/{name},method=GET,status=404}"] == 1
    assert m["cxr_requests_total{endpoint=unmatched,method=GET,status=404}"] == 1
    assert m["cxr_rejections_total{reason=bad_input}"] == 1
    assert m["cxr_request_duration_seconds_count{endpoint=/v1/predict,method=POST}"] == 2
    assert m["cxr_preprocess_duration_seconds_count"] == 2  # the PDF is refused after sniffing
    assert m["cxr_queue_wait_seconds_count"] == 2 and m["cxr_batch_size_sum"] == 2
    assert m["cxr_inference_batch_duration_seconds_count"] == 2
    assert m["cxr_predicted_age_years_count"] == 2
    assert sum(v for k, v in m.items() if k.startswith("cxr_predicted_sex_total")) == 2
    assert m["cxr_queue_depth"] == 0 and m["cxr_requests_in_flight"] == 1  # this scrape
    assert (
        m[
            "cxr_model_info{name=cxr-age-sex,sha256="
            + httpx.get(f"{server.url}/v1/models").json()["sha256"]
            + ",version=0.0.1-test}"
        ]
        == 1
    )
    assert m["cxr_images_total{format=png}"] == 2
    # raw paths never become labels
    assert not any("12345" in k or "some-other-name" in k for k in m)
