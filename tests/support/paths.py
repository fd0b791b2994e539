"""Where things are: the repository, the committed demo model and the shared NIH sample."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
NIH = REPO.parent / "shared" / "data" / "nih-cxr-1000"
NIH_IMAGES = NIH / "images"
ARTIFACTS = REPO / "test-artifacts"  # screenshots the browser tests leave for people to look at
