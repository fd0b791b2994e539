"""The model page renders a full card: metrics beside baselines, trust figures, intended use."""

from __future__ import annotations

import json
import re

import httpx

from tests.support.paths import MODELS

CARD = {
    "name": "cxr-age-sex",
    "version": "1.2.3",
    "created": "2026-11-25T21:00:00Z",
    "input": {"name": "image", "shape": [None, 64, 64, 1]},
    "training_data": {
        "dataset": "NIH ChestX-ray14 subset",
        "images": {"train": 700, "validation": 150, "test": 150},
        "split": "by patient, stratified by age bin and sex",
    },
    "metrics": {
        "test": {
            "age_mae": 9.12,
            "age_r2": 0.01,
            "sex_auc": 0.8123,
            "sex_accuracy": 0.74,
            "sex_sensitivity": 0.91,
            "novel_metric": 1.5,
        },
        "validation": {"age_mae": 9.34, "sex_auc": 0.8},
        "baselines": {
            "test": {
                "age_mae": 13.94,
                "age_r2": 0.02,
                "sex_auc": 0.5,
                "sex_accuracy": 0.55,
                "sex_sensitivity": 1.0,
            }
        },
    },
    "age_interval": {"quantiles": {"0.9": 18.3}, "coverage_test": {"0.9": 0.893}},
    "sex_calibration": {"ece_before": {"test": 0.081}, "ece_after": {"test": 0.029}},
    "input_guard": {"false_flag_rate": {"test": 0.012}, "inv_cov": [[1.0]]},
    "intended_use": "Flag <b>possible</b> patient-identification errors.",
    "disclaimer": "Research demo, not for clinical use.",
    "sha256": "ab" * 32,
}


def cells(html: str, label: str) -> list[str]:
    row = re.search(rf"<tr><th scope=\"row\">{re.escape(label)}.*?</tr>", html, flags=re.DOTALL)
    assert row, f"no metrics row {label!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))


def test_model_page_from_card(mock_app) -> None:
    app, seen = mock_app(lambda r: httpx.Response(200, json=CARD))
    response = app.test_client().get("/model")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert [r.url.path for r in seen if r.url.path != "/readyz"] == ["/v1/models"]
    assert "version 1.2.3" in html
    assert cells(html, "Age: mean absolute error") == [
        '9.1 years <span class="mark">✓ beats baseline</span>',
        "13.9 years",
        "9.3 years",
    ]
    assert cells(html, "Sex: ROC AUC of P(male)")[1:] == ["0.500", "0.800"]
    assert cells(html, "Sex: accuracy")[0].startswith('74.0 % <span class="mark">✓')
    assert cells(html, "Age: R²")[0].startswith('0.010 <span class="mark">✗ not better')
    assert cells(html, "Sex: sensitivity (male)") == ["91.0 %", "100.0 %", "—"]  # no direction
    assert cells(html, "novel metric") == ["1.500", "—", "—"]
    assert "± 18.3 years; covers 89.3 % of test images" in html
    assert "0.081 before → 0.029 after" in html
    assert "1.2 %" in html
    assert "NIH ChestX-ray14 subset" in html and "700" in html
    assert "Flag &lt;b&gt;possible&lt;/b&gt;" in html  # card text is data, not markup
    assert html.count("Research demo, not for clinical use.") >= 2  # notice + footer


def test_model_page_with_a_sparse_card(mock_app) -> None:
    app, _ = mock_app(lambda r: httpx.Response(200, json={"name": "bare", "metrics": "oops"}))
    response = app.test_client().get("/model")
    assert response.status_code == 200
    assert "carries no test metrics" in response.get_data(as_text=True)


def test_model_page_names_what_does_not_fit_the_card_schema(mock_app) -> None:
    """CARD above lacks required keys (preprocessing, outputs): the page renders and says so."""
    app, _ = mock_app(lambda r: httpx.Response(200, json=CARD))
    html = app.test_client().get("/model").get_data(as_text=True)
    assert "does not match the schema" in html and "preprocessing" in html


def test_model_page_of_the_committed_card_has_no_schema_warning(mock_app) -> None:
    card = json.loads((MODELS / "model.json").read_text())
    app, _ = mock_app(lambda r: httpx.Response(200, json=card))
    html = app.test_client().get("/model").get_data(as_text=True)
    assert card["version"] in html and "does not match the schema" not in html
