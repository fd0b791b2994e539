"""cxr/card.py: the model card as one typed schema — the committed card loads and round-trips,
a missing or wrong-typed key is refused naming it (also at service start), and the core stays
free of web frameworks and TensorFlow."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxr import card as card_module
from cxr import imaging
from cxr.card import CardError, ModelCard, Preprocessing, card_json, load_card, write_card
from cxr.imaging import PreprocessParams

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "models" / "model.json"


def test_committed_card_loads_and_round_trips(tmp_path: Path) -> None:
    card = load_card(COMMITTED)
    assert isinstance(card, ModelCard) and card.params.size == card.input.shape[1]
    assert card.output_names()[:2] == ["age", "p_male"]
    original = json.loads(COMMITTED.read_text())
    assert card.public() == original  # nothing dropped, nothing added, extra keys kept
    write_card(card, tmp_path / "model.json")
    assert json.loads((tmp_path / "model.json").read_text()) == original
    assert load_card(tmp_path / "model.json") == card


def test_card_json_keeps_number_lists_on_one_line() -> None:
    text = card_json(load_card(COMMITTED))
    assert '"shape": [null, ' in text and "\n" not in re.search(r'"mean": \[[^\]]*\]', text)[0]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda c: c.pop("sha256"), "'sha256' — Field required"),
        (lambda c: c["input"].pop("shape"), "'input.shape' — Field required"),
        (lambda c: c["preprocessing"].update(size="big"), "'preprocessing.size'"),
        (lambda c: c["preprocessing"].update(id="other-pipeline-v9"), "'preprocessing.id'"),
        (lambda c: c.update(outputs={"age": 1}), "'outputs'"),
        (lambda c: c["age_interval"]["quantiles"].update({"90": 20.0}), "'age_interval.quantiles'"),
        (lambda c: c["input_guard"].update(inv_cov=[[1.0]]), "inv_cov is 1×1; mean has"),
        (lambda c: c.update(version=3), "'version' — Input should be a valid string (got 3)"),
    ],
)
def test_bad_card_refused_naming_the_key(tmp_path: Path, change, needle: str) -> None:
    data = json.loads(COMMITTED.read_text())
    change(data)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CardError) as info:
        load_card(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_service_refuses_to_start_on_a_bad_card_naming_the_key(tmp_path: Path) -> None:
    from service.app import create_app
    from service.model import ModelMismatch
    from service.settings import Settings

    data = json.loads(COMMITTED.read_text())
    del data["preprocessing"]["size"]
    data["input"]["dtype"] = 32
    (tmp_path / "model.json").write_text(json.dumps(data))
    (tmp_path / "model.onnx").write_bytes((COMMITTED.parent / "model.onnx").read_bytes())
    app = create_app(Settings(model_dir=tmp_path))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(ModelMismatch) as info:
        asyncio.run(start())
    assert "'preprocessing.size' — Field required" in str(info.value)
    assert "'input.dtype'" in str(info.value) and "(got 32)" in str(info.value)


def test_missing_or_broken_file_named(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="not found"):
        load_card(tmp_path / "absent.json")
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        load_card(tmp_path / "model.json")


def test_preprocessing_converts_both_ways() -> None:
    params = PreprocessParams(size=128, border_threshold=12, resample="area")
    assert Preprocessing.of(params).params() == params
    assert Preprocessing(size=64).id == imaging.PREPROCESSING_ID == card_module.PREPROCESSING_ID


def test_card_module_needs_only_pydantic() -> None:
    """The web app reads the card without numpy, Pillow or pydicom in its image."""
    code = (
        "import sys, cxr.card; print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'PIL', 'pydicom', 'onnxruntime'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_core_imports_no_web_framework_and_no_tensorflow() -> None:
    code = (
        "import sys, cxr, cxr.imaging, cxr.errors, cxr.card, cxr.guard; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', "
        "'flask', 'tensorflow', 'keras', 'service', 'training', 'gateway_flask', 'uvicorn'}); "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_nothing_imports_the_service_but_the_service() -> None:
    pattern = re.compile(r"^\s*(from service\b|import service\b)", re.MULTILINE)
    found = [
        str(p.relative_to(ROOT))
        for folder in ("cxr", "training", "gateway_flask", "benchmarks", "integrations")
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text())
    ]
    assert found == []


def test_one_age_interval_is_the_vector_computation_rounded() -> None:
    """`around` (plain floats, per prediction) against `bounds` (numpy, the /v2 tensors): the
    same numbers for ages inside, near and beyond the display range, every level."""
    import math
    import random

    from cxr.card import AgeInterval

    interval = AgeInterval(quantiles={"0.5": 4.3, "0.8": 9.87, "0.9": 12.345, "0.95": 15.0})
    rng = random.Random(3)
    ages = [
        0.0,
        1e-9,
        3.1,
        12.345,
        119.99,
        120.0,
        125.5,
        -7.0,
        1e6,
        *[rng.uniform(-20, 140) for _ in range(500)],
    ]
    for level in interval.levels():
        for age in ages:
            b = interval.bounds([age], level)
            assert b is not None
            want = [round(float(b[0, 0]), 2), round(float(b[0, 1]), 2)]
            assert interval.around(age, level) == want, (age, level)
    assert interval.around(50.0, "0.99") is None
    assert interval.around(math.nan) is None and interval.around(math.inf) is None
