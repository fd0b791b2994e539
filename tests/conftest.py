"""Fixtures every suite may use: the tiny real ONNX model (tests/support/models.py) as a
MODEL_DIR, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import make_model_dir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and its card: age = 0.3·mean + 10, p_male = sigmoid((mean − 100)/20)."""
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def faulty_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, except that ORT raises on bright inputs (max pixel over 250)."""
    return make_model_dir(tmp_path_factory.mktemp("faulty"), faulty=True)
