"""Multi-source data: reader, per-source splits, leave-one-source-out, balanced draws, augmentation,
cross-site summary, and full-size vs small uploads through the one preprocessing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.imaging import PreprocessParams, preprocess_bytes
from training.augment import augment_batch
from training.config import TrainConfig
from training.data import detect_format, read_dataset
from training.feed import sampling_weights
from training.loading import load_image
from training.phantom import generate_phantom, phantom_png
from training.sources import source_counts, split_by_source
from training.train import split_data

NEW_HEADER = ["image", "patient_id", "age", "sex", "view", "source", "license"]


def _write_source(
    root: Path, name: str, rows: list[tuple[str, int, str]], header=NEW_HEADER
) -> None:
    folder = root / name
    (folder / "images").mkdir(parents=True)
    with (folder / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, (patient, age, sex) in enumerate(rows):
            image = f"{name}-{i}.png"
            (folder / "images" / image).write_bytes(phantom_png(generate_phantom(i, 64)))
            extra = [name, "CC BY"] if header is NEW_HEADER else ["No Finding"]
            w.writerow([image, patient, age, sex, "PA", *extra])


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    # Patient "7" exists in both sources: different people, ids are unique only within a source.
    _write_source(
        tmp_path,
        "nih",
        [(str(p % 10), 40 + p, "MF"[p % 2]) for p in range(30)],
        header=["image", "patient_id", "age", "sex", "view", "finding_labels"],
    )
    _write_source(tmp_path, "jsrt", [(str(p), 30 + p, "FM"[p % 2]) for p in range(20)])
    _write_source(tmp_path, "tiny", [("a", 50, "M"), ("b", 60, "F"), ("c", 70, "X")])
    return tmp_path


def test_multi_reader_keeps_source_and_qualifies_patients(multi):
    assert detect_format(multi) == "multi"
    records = read_dataset(multi, "multi")
    assert source_counts(records) == {"jsrt": 20, "nih": 30, "tiny": 2}  # sex "X" skipped
    assert {r.patient_id for r in records if r.source == "nih"} >= {"nih:7"}
    assert "jsrt:7" in {r.patient_id for r in records}
    assert all(r.patient_id.startswith(f"{r.source}:") for r in records)


def test_split_by_source_is_by_patient_and_covers_every_source(multi):
    records = read_dataset(multi, "multi")
    names, rule = split_by_source(records, 0.2, 0.2, seed=0)
    assert "per source" in rule
    by_patient: dict[str, set[str]] = {}
    for r, n in zip(records, names, strict=True):
        by_patient.setdefault(r.patient_id, set()).add(n)
    assert all(len(s) == 1 for s in by_patient.values())
    for source in ("nih", "jsrt"):
        got = {n for r, n in zip(records, names, strict=True) if r.source == source}
        assert got == {"train", "validation", "test"}, source


def test_leave_out_makes_one_source_the_whole_test_split(multi):
    records = read_dataset(multi, "multi")
    names, _ = split_data(records, TrainConfig(format="multi", leave_out="jsrt", val_fraction=0.2))
    held = np.array([r.source == "jsrt" for r in records])
    assert set(names[held]) == {"test"} and "test" not in set(names[~held])
    assert {"train", "validation"} <= set(names[~held])
    with pytest.raises(ValueError, match="not a source"):
        split_data(records, TrainConfig(format="multi", leave_out="nope"))


def test_balanced_draws_share_sources_and_sexes():
    sources = ["big"] * 900 + ["small"] * 100
    male = np.array([i % 10 < 7 for i in range(900)] + [i % 2 == 0 for i in range(100)])
    w = sampling_weights(sources, male, power=0.5)
    src = np.array(sources)
    assert w.sum() == pytest.approx(1.0)
    assert w[src == "big"].sum() / w[src == "small"].sum() == pytest.approx(3.0)  # √900 / √100
    assert w[(src == "big") & male].sum() == pytest.approx(w[(src == "big") & ~male].sum())
    equal = sampling_weights(sources, male, power=0.0)
    assert equal[src == "big"].sum() == pytest.approx(0.5)


def test_site_augmentation_keeps_shape_range_and_varies():
    image = generate_phantom(3, 128).image
    batch = np.stack([image] * 16)
    out = augment_batch(batch, np.random.default_rng(0))
    again = augment_batch(batch, np.random.default_rng(0))
    assert out.shape == (16, 128, 128, 1) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert np.array_equal(out, again)  # seeded: reproducible
    assert np.std([x.mean() for x in out]) > 1.0  # tone changes happen
    # Never a left-right flip: a film bright on its left stays brighter on the left.
    half = np.zeros((128, 128), np.uint8)
    half[:, :64], half[:, 64:] = 200, 20
    flipped = augment_batch(np.stack([half] * 64), np.random.default_rng(1))[..., 0]
    assert np.all(flipped[:, :, :64].mean(axis=(1, 2)) > flipped[:, :, 64:].mean(axis=(1, 2)))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [64, 128])
def test_full_size_upload_and_its_small_version_preprocess_alike(tmp_path, size):
    """A 2048-px film and its 256-px copy give nearly the same model input (train and serve)."""
    base = Image.fromarray(generate_phantom(5, 512).image)
    full = base.resize((2048, 2048), Image.Resampling.BICUBIC)
    small = full.resize((256, 256), Image.Resampling.LANCZOS)
    params = PreprocessParams(size=size)
    big_t = preprocess_bytes(_png(full), params)[..., 0]
    small_t = preprocess_bytes(_png(small), params)[..., 0]
    diff = np.abs(big_t - small_t)
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16, (diff.mean(), diff.max())
    # Training reads files through the same function: identical to what the service computes.
    path = tmp_path / "full.png"
    path.write_bytes(_png(full))
    from training.data import Record

    assert np.array_equal(load_image(Record(path, 50.0, True), params), big_t.astype(np.uint8))


def test_tiny_leave_one_source_out_run(multi, tmp_path, capsys):
    """Two folds of a tiny LOSO in-process: held-out tables, pooled row, trust numbers, resume."""
    from training.crosssite import run_loso

    cfg = TrainConfig(
        data=str(multi),
        image_size=32,
        width=4,
        depth=2,
        neck_dim=8,
        epochs=2,
        batch_size=8,
        augment_mode="site",
        balance=True,
        warmup_epochs=2,
        val_fraction=0.3,
        workers=1,
        threads=1,
        cache_dir=str(tmp_path / "cache"),
    )
    out = tmp_path / "loso"
    summary = run_loso(cfg, out, min_images=20)
    assert summary["held_out_sources"] == ["jsrt", "nih"]
    table = summary["table"]
    assert table["jsrt"]["n"] == 20 and table["nih"]["n"] == 30 and table["pooled"]["n"] == 50
    for row in table.values():
        assert {"age_mae", "age_r2", "sex_auc", "sex_accuracy"} <= set(row["model"])
        assert row["baseline"]["sex_auc"] == 0.5
    assert 0 <= table["jsrt"]["coverage_0.9"] <= 1 and 0 <= table["nih"]["guard_flag_rate"] <= 0.05
    q = summary["age_interval"]["quantiles"]
    assert 0 < q["0.8"] <= q["0.9"] <= q["0.95"]
    assert summary["guard_factor"] >= 1.0 and summary["temperature_pooled_validation"] > 0
    assert "leave-one-source-out" in capsys.readouterr().out
    mtime = (out / "jsrt" / "preds.npz").stat().st_mtime_ns
    run_loso(cfg, out, min_images=20)  # finished folds are not retrained
    assert (out / "jsrt" / "preds.npz").stat().st_mtime_ns == mtime


def test_cache_that_cannot_be_written_does_not_stop_training(tmp_path: Path) -> None:
    """The training image's root is read-only: decoding goes on without the cache."""
    from training.cache import load_images_cached
    from training.data import Record

    path = tmp_path / "a.png"
    path.write_bytes(phantom_png(generate_phantom(1, 96)))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")
    records = [Record(path, 40.0, True)]
    images, kept = load_images_cached(records, PreprocessParams(size=64), 1, blocker / "cache")
    assert images.shape == (1, 64, 64) and kept == records
    images2, _ = load_images_cached(records, PreprocessParams(size=64), 1, tmp_path / "ok")
    assert np.array_equal(images, images2) and list((tmp_path / "ok").glob("*.npz"))
