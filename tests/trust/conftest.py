"""Fixtures: the committed demo model served by a real uvicorn server, and the NIH sample."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.paths import MODELS, NIH
from tests.support.servers import RunningServer, server_settings
from training.data import read_nih
from training.sources import read_multi, split_by_source
from training.splits import split_records

SHARED = NIH.parent  # every source folder of ../shared/data


@pytest.fixture(scope="session")
def card() -> dict:
    """The committed model card."""
    return json.loads((MODELS / "model.json").read_text())


@pytest.fixture(scope="session")
def nih() -> Path:
    if not (NIH / "labels.csv").is_file():
        pytest.skip(f"the NIH sample is not at {NIH}")
    return NIH


# make demo-model: --val-fraction 0.2 --test-fraction 0.2, seed 0 (the card's `split` says so)
VAL_FRACTION, TEST_FRACTION, SEED = 0.2, 0.2, 0


@pytest.fixture(scope="session")
def test_split(nih: Path, card: dict) -> list:
    """The demo model's test split, rebuilt from the dataset exactly as training drew it.

    A multi-source card (issue 16) splits every folder of ../shared/data by patient per source.
    """
    if card["training_data"]["dataset"].startswith("multi"):
        records = read_multi(SHARED).records
        names, rule = split_by_source(records, VAL_FRACTION, TEST_FRACTION, SEED)
        assert rule == card["training_data"]["split"]
    else:
        records = read_nih(nih).records
        names, rule = split_records(records, VAL_FRACTION, TEST_FRACTION, SEED)
        assert rule.split(",")[0] in card["training_data"]["split"]
    test = [r for r, n in zip(records, names, strict=True) if n == "test"]
    assert len(test) == card["training_data"]["images"]["test"]
    return test


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """The API on the committed model (module-wide: starting ORT costs a second)."""
    server = RunningServer(server_settings(MODELS)).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def serve_demo(serve: Callable[[Settings], RunningServer]) -> Callable[..., RunningServer]:
    """Factory: a server on a model directory (the committed one by default) with Settings
    overrides; stopped after the test."""

    def start(model_dir: Path = MODELS, **overrides: object) -> RunningServer:
        return serve(server_settings(model_dir, **overrides))

    return start
