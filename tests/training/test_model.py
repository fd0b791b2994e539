"""Model construction and the tf.data pipeline (in-process Keras; no training)."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import TrainConfig

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module", autouse=True)
def _tf() -> None:
    from training.tfsetup import setup_tensorflow

    setup_tensorflow(threads=2, seed=0)


def test_cnn_outputs_and_in_graph_scaling():
    from training.model import build_model, with_embedding

    cfg = TrainConfig(image_size=64, width=8, depth=3, neck_dim=16)
    model = build_model(cfg, age_mean=55.0, age_std=12.0)
    full = with_embedding(model)
    out = full.predict(np.full((3, 64, 64, 1), 128.0, np.float32), verbose=0)
    assert (
        out["age"].shape == (3, 1)
        and out["sex"].shape == (3, 1)
        and out["embedding"].shape == (3, 32)
    )  # pooled: 8 → 16 → 32 filters
    # A fresh head predicts near zero in standardised units, i.e. near the training mean in years.
    assert np.all(np.abs(out["age"] - 55.0) < 12.0)
    assert model.get_layer("grey_0_1").scale == pytest.approx(1 / 255)


def test_keras_applications_backbone_without_weights():
    from training.model import build_model

    cfg = TrainConfig(image_size=64, backbone="MobileNetV2", weights="none", neck_dim=8)
    model = build_model(cfg, 50.0, 10.0)
    out = model.predict(np.zeros((2, 64, 64, 1), np.float32), verbose=0)
    assert out["age"].shape == (2, 1) and out["sex"].shape == (2, 1)


def test_unknown_backbone_is_named():
    from training.model import build_model

    with pytest.raises(ValueError, match="unknown backbone 'ResNet9000'"):
        build_model(TrainConfig(image_size=64, backbone="ResNet9000"), 50.0, 10.0)


def test_augmented_batches_keep_shape_range_and_labels():
    from training.train import make_dataset

    images = np.random.default_rng(0).integers(0, 256, (10, 64, 64), dtype=np.uint8)
    age = np.arange(10, dtype=np.float32) + 30
    male = np.arange(10) % 2 == 0
    ds = make_dataset(images, age, male, 4, training=True, augment=True, seed=0)
    seen = []
    for x, y in ds:
        assert x.dtype.name == "float32" and x.shape[1:] == (64, 64, 1)
        assert float(np.min(x)) >= 0.0 and float(np.max(x)) <= 255.0
        seen.extend(y["age"].numpy()[:, 0].tolist())
    assert sorted(seen) == age.tolist()  # every image once per epoch, labels intact
    plain = next(iter(make_dataset(images, age, male, 10, training=False, augment=False, seed=0)))
    assert np.array_equal(plain[0].numpy()[..., 0], images.astype(np.float32))  # eval: untouched
