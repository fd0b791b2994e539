"""A real Chromium on the real API: warnings stand out, and 'show where the model looked' works
under the page's CSP (no inline script)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import require_playwright
from tests.support.images import sample_png
from tests.support.paths import ARTIFACTS, NIH_IMAGES
from tests.support.samples import colour_photograph

pytestmark = pytest.mark.browser

require_playwright()


def test_show_where_the_model_looked(page, tmp_path: Path) -> None:
    chest = tmp_path / "chest.png"
    chest.write_bytes(sample_png(7))
    page.goto("/")
    page.set_input_files("#files", [str(chest)])
    page.click("#submit")
    page.wait_for_selector(".result-card")
    assert "90 % interval" in page.locator(".result-card .age-interval").inner_text()
    button = page.locator(".result-card .explain-button")
    assert button.get_attribute("aria-expanded") == "false"
    button.click()
    overlays = page.locator(".explain-panel img.explain-overlay")
    overlays.first.wait_for(timeout=30_000)
    assert overlays.count() == 2
    for i in range(2):
        assert overlays.nth(i).evaluate("img => img.complete && img.naturalWidth") == 256
    panel = page.locator(".explain-panel")
    assert "hiding the patch made it older" not in panel.inner_text()  # age map: down = younger
    assert "made it older" in panel.inner_text() and "more female" in panel.inner_text()
    assert "8 × 8 patches" in panel.inner_text()
    assert button.get_attribute("aria-expanded") == "true"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-explain.png"), full_page=True)
    button.click()  # hides again, without asking the API twice
    assert not panel.is_visible()
    assert page.console_errors == []


@pytest.mark.skipif(
    not NIH_IMAGES.is_dir(),
    reason="needs a real chest X-ray from ../shared/data/nih-cxr-1000 "
    "(the drawn fallback image is rightly flagged by the input guard)",
)
def test_flagged_image_warning_is_prominent_and_rows_explain(page, tmp_path: Path) -> None:
    photo, chest = tmp_path / "holiday.jpg", tmp_path / "chest.png"
    photo.write_bytes(colour_photograph(3))
    chest.write_bytes(sample_png(8))
    page.goto("/")
    page.set_input_files("#files", [str(chest), str(photo)])
    page.click("#submit")
    page.wait_for_selector(".results-table")
    banner = page.locator(".warning-banner")
    assert banner.is_visible() and "1 of 2 images" in banner.inner_text()
    assert banner.get_attribute("role") == "alert"
    flagged = page.locator("tr.result", has_text="holiday.jpg")
    assert "colour" in flagged.locator(".warning").first.inner_text()
    page.locator("tr.result", has_text="chest.png").locator(".explain-button").click()
    page.locator("tr.explain-row img.explain-overlay").first.wait_for(timeout=30_000)
    assert page.locator("tr.explain-row").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway-warnings.png"), full_page=True)
    assert page.console_errors == []
