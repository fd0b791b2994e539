"""Headless Chromium for the browser tests: Debian's chromium driven by playwright."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def require_playwright() -> ModuleType:
    """playwright.sync_api, or skip (the whole module, when called at module level) if it or
    Debian's chromium is missing."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -r requirements/dev.txt)",
    )
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make system-deps)", allow_module_level=True)
    return sync_api
