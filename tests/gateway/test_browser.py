"""A real headless Chromium drives the page: pick or drop X-rays, read the predictions."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support.browser import require_playwright
from tests.support.images import sample_png
from tests.support.paths import ARTIFACTS

pytestmark = pytest.mark.browser

require_playwright()


def write_images(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "chest-1.png", tmp_path / "chest-2.png", tmp_path / "notes.png"]
    paths[0].write_bytes(sample_png(4))
    paths[1].write_bytes(sample_png(5))
    paths[2].write_bytes(b"%PDF-1.4 this is a document, not an image")
    return paths


def test_pick_files_see_age_sex_and_errors(page, tmp_path: Path) -> None:
    page.goto("/")
    assert page.locator("#api-health").inner_text().strip() == "API ready"
    # Keyboard users reach the file picker with Tab.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "files":
            break
    assert page.evaluate("document.activeElement.id") == "files"

    page.set_input_files("#files", [str(p) for p in write_images(tmp_path)])
    assert page.locator("#file-list li").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-upload.png"), full_page=True)
    page.click("#submit")
    page.wait_for_selector(".results-table")

    rows = page.locator(".results-table tbody tr")
    assert rows.count() == 3
    for name in ("chest-1.png", "chest-2.png"):
        row = rows.filter(has_text=name)
        assert row.locator(".age-value").inner_text().endswith(" years")
        assert row.locator(".sex-value").inner_text() in ("Male", "Female")
        assert row.locator("img.thumb").evaluate("img => img.naturalWidth") > 0
    bad = rows.filter(has_text="notes.png")
    assert "not a supported image" in bad.locator(".error-message").inner_text()
    assert (
        page.locator(".disclaimer").inner_text().startswith("Research demo, not for clinical use.")
    )
    with page.expect_download() as download:
        page.click("#csv-download")
    assert download.value.suggested_filename == "cxr-age-sex-results.csv"
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.count("\n") == 4 and "unsupported_media_type" in csv_text

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-results-table.png"), full_page=True)
    assert page.console_errors == []


def test_drop_one_file_see_result_card(page) -> None:
    page.goto("/")
    payload = base64.b64encode(sample_png(6)).decode()
    data_transfer = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
            return dt;
        }""",
        payload,
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": data_transfer})
    assert page.locator("#file-list li").inner_text().startswith("dropped.png")
    page.click("#submit")
    page.wait_for_selector(".result-card")
    assert page.locator(".result-card .filename").inner_text() == "dropped.png"
    assert page.locator(".result-card .age-value").inner_text().endswith("years")
    assert page.locator(".result-card .sex-value").inner_text() in ("Male", "Female")
    assert "P(male)" in page.locator(".result-card .pbar-label").inner_text()
    assert page.locator(".model-name").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-result-single.png"), full_page=True)
    assert page.console_errors == []


def test_model_page_renders(page) -> None:
    page.goto("/model")
    assert page.locator("h1 .model-name").inner_text()
    assert page.locator(".disclaimer").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-model.png"), full_page=True)
    assert page.console_errors == []
