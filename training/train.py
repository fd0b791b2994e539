"""`python -m training train`: data → model → fit → evaluate, everything into the run directory."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cxr.imaging import PreprocessParams
from training.cache import load_images_cached
from training.config import TrainConfig
from training.data import DataError, read_dataset
from training.phantom import write_phantom_dataset
from training.sources import source_counts, split_by_source
from training.splits import SPLITS, split_records, write_split

logger = logging.getLogger(__name__)


def _augmenter(seed: int):
    """Light, label-preserving changes: small rotation/shift/zoom, brightness/contrast."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
            layers.RandomTranslation(0.05, 0.05, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 2),
            layers.RandomBrightness(0.08, value_range=(0.0, 255.0), seed=seed + 3),
            layers.RandomContrast(0.15, value_range=(0.0, 255.0), seed=seed + 4),
        ],
        name="augment",
    )


def make_dataset(
    images: npt.NDArray[np.uint8],
    age: npt.NDArray[np.float32],
    male: npt.NDArray[np.bool_],
    batch_size: int,
    *,
    training: bool,
    augment: bool,
    seed: int,
):
    """tf.data pipeline over the decoded images: cache, shuffle, batch, augment, prefetch."""
    import tensorflow as tf

    labels = {"age": age.astype(np.float32)[:, None], "sex": male.astype(np.float32)[:, None]}
    ds = tf.data.Dataset.from_tensor_slices((images[..., None], labels)).cache()
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    if training and augment:
        aug = _augmenter(seed)
        ds = ds.map(
            lambda x, y: (tf.clip_by_value(aug(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def split_data(records, cfg: TrainConfig) -> tuple[npt.NDArray[np.str_], str]:
    """By patient (per source if there are sources); --leave-out makes one source the test split."""
    if not any(r.source for r in records):
        if cfg.leave_out:
            raise DataError(
                f"--leave-out {cfg.leave_out} needs a multi-source dataset (--format multi)"
            )
        return split_records(records, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if not cfg.leave_out:
        return split_by_source(records, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    held = np.array([r.source == cfg.leave_out for r in records])
    if not held.any():
        raise DataError(
            f"--leave-out {cfg.leave_out!r} is not a source; sources: {source_counts(records)}"
        )
    rest = [r for r, h in zip(records, held, strict=True) if not h]
    # The remaining sources give train and validation only: the held-out source is the test.
    sub, rule = split_by_source(rest, cfg.val_fraction, 0.0, cfg.seed)
    names = np.full(len(records), "test", dtype=object)
    names[~held] = sub
    return names.astype(str), f"source {cfg.leave_out} held out as test; others {rule}"


def prepare_data(cfg: TrainConfig, run_dir: Path):
    """Read the dataset, decode it once, split it, write split.csv and data.json."""
    data_dir = Path(cfg.data) if cfg.data else run_dir / "phantom-data"
    fmt = cfg.format
    if fmt == "phantom":
        # SYNTHETIC data: generated into a folder, then read like any labelled CSV dataset.
        write_phantom_dataset(data_dir, cfg.n_phantoms, size=max(64, cfg.image_size), seed=cfg.seed)
        fmt = "csv"
    records = read_dataset(data_dir, fmt)
    params = PreprocessParams(size=cfg.image_size)
    images, records = load_images_cached(records, params, cfg.workers, cfg.cache_dir)
    names, rule = split_data(records, cfg)
    write_split(run_dir / "split.csv", records, names)
    counts = {s: int(np.sum(names == s)) for s in SPLITS}
    dataset = (
        "synthetic phantoms (training/phantom.py)"
        if cfg.format == "phantom"
        else f"{fmt}: {data_dir.resolve().name}"
    )
    if any(r.source for r in records):
        dataset += f" ({', '.join(source_counts(records))})"
    info = {"dataset": dataset, "format": fmt, "images": counts, "split": rule}
    if any(r.source for r in records):
        src = np.array([r.source or "" for r in records])
        info["sources"] = {
            s: {split: int(np.sum((names == split) & (src == s))) for split in SPLITS}
            for s in source_counts(records)
        }
    (run_dir / "data.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("split %s: %s", rule, counts)
    return images, records, names


def train(cfg: TrainConfig) -> Path:
    """Run one training; return the run directory."""
    from training.tfsetup import setup_tensorflow

    setup_tensorflow(cfg.threads, cfg.seed)
    import keras

    from training.evaluate import evaluate_run
    from training.model import build_model

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    images, records, names = prepare_data(cfg, run_dir)
    age = np.array([r.age for r in records], np.float32)
    male = np.array([r.male for r in records], bool)
    tr, va = names == "train", names == "validation"
    if tr.sum() == 0 or va.sum() == 0:
        raise ValueError(
            f"split left {tr.sum()} training and {va.sum()} validation images; need both"
        )

    age_mean, age_std = float(age[tr].mean()), float(max(age[tr].std(), 1.0))
    model = build_model(cfg, age_mean, age_std)
    if cfg.age_loss == "huber":
        # Huber_δ(e)/σ² equals Huber on standardised ages, so the two heads weigh alike.
        age_loss, age_weight = (
            keras.losses.Huber(delta=cfg.huber_delta),
            cfg.age_weight / age_std**2,
        )
    else:
        age_loss, age_weight = keras.losses.MeanAbsoluteError(), cfg.age_weight / age_std
    per_epoch = int(np.ceil(tr.sum() / cfg.batch_size))
    warmup = per_epoch * min(cfg.warmup_epochs, cfg.epochs - 1)
    steps = per_epoch * cfg.epochs - warmup
    if cfg.lr_schedule == "cosine" and warmup:
        lr = keras.optimizers.schedules.CosineDecay(
            cfg.learning_rate * 0.05,
            steps,
            alpha=0.01,
            warmup_target=cfg.learning_rate,
            warmup_steps=warmup,
        )
    elif cfg.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps, alpha=0.01)
    else:
        lr = cfg.learning_rate
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss={"age": age_loss, "sex": keras.losses.BinaryCrossentropy(from_logits=True)},
        loss_weights={"age": age_weight, "sex": 1.0},
        metrics={
            "age": [keras.metrics.MeanAbsoluteError(name="mae")],
            "sex": [keras.metrics.AUC(from_logits=True, name="auc")],
        },
    )
    if cfg.augment_mode == "site" or cfg.balance:
        from training.feed import SiteBatches

        sources = [r.source or "" for r, t in zip(records, tr, strict=True) if t]
        train_ds = SiteBatches(
            images[tr],
            age[tr],
            male[tr],
            sources,
            cfg.batch_size,
            seed=cfg.seed,
            balance=cfg.balance,
            balance_power=cfg.balance_power,
            augment=cfg.augment and cfg.augment_mode == "site",
            strength=cfg.augment_strength,
        )
    else:
        train_ds = make_dataset(
            images[tr],
            age[tr],
            male[tr],
            cfg.batch_size,
            training=True,
            augment=cfg.augment,
            seed=cfg.seed,
        )
    val_ds = make_dataset(
        images[va], age[va], male[va], cfg.batch_size, training=False, augment=False, seed=cfg.seed
    )
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.keras"), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.patience, restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
    ]
    if cfg.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, cfg.patience // 3), min_lr=1e-5
            )
        )
    elif cfg.lr_schedule != "cosine":
        raise ValueError(f"lr_schedule {cfg.lr_schedule!r} is not one of cosine, plateau")
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    evaluate_run(run_dir, images=images, records=records, names=names)
    return run_dir
