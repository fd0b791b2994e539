"""One multi-task Keras model: grey levels in, `age` (years) and `sex` (logit of P(male)) out."""

from __future__ import annotations

import keras
from keras import layers

from training.config import TrainConfig

NECK_LAYER = "neck"  # the small dense layer both heads share
FEATURES_LAYER = "features"  # globally pooled conv features: exported as `embedding` for the guard


def _conv_backbone(x: keras.KerasTensor, cfg: TrainConfig) -> keras.KerasTensor:
    """Conv → BN → ReLU (twice) → MaxPool blocks, then global average pooling."""
    for block in range(cfg.depth):
        filters = cfg.width * 2 ** min(block, 3)
        for _ in range(2):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                use_bias=False,
                kernel_regularizer=keras.regularizers.l2(cfg.weight_decay),
            )(x)
            x = layers.BatchNormalization(momentum=0.9)(x)  # small datasets: few steps per epoch
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)


def _applications_backbone(x: keras.KerasTensor, cfg: TrainConfig) -> keras.KerasTensor:
    """A keras.applications network (DenseNet121, EfficientNetB0, …) on the grey image as RGB."""
    app = getattr(keras.applications, cfg.backbone, None)
    if app is None:
        raise ValueError(
            f"unknown backbone {cfg.backbone!r}; use 'cnn' or a keras.applications name"
        )
    rgb = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    # ImageNet networks expect roughly zero-centred inputs: map 0–1 to −1…1.
    rgb = layers.Rescaling(2.0, offset=-1.0)(rgb)
    weights = None if cfg.weights == "none" else cfg.weights
    net = app(
        include_top=False,
        weights=weights,
        input_shape=(cfg.image_size, cfg.image_size, 3),
        pooling="avg",
    )
    return layers.Identity(name=FEATURES_LAYER)(net(rgb))


def build_model(cfg: TrainConfig, age_mean: float, age_std: float) -> keras.Model:
    """The model; normalisation (÷255) and the age scale (× std + mean) live inside the graph."""
    inputs = keras.Input((cfg.image_size, cfg.image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="grey_0_1")(inputs)
    x = _conv_backbone(x, cfg) if cfg.backbone == "cnn" else _applications_backbone(x, cfg)
    x = layers.Dropout(cfg.dropout)(x)
    neck = layers.Dense(cfg.neck_dim, activation="relu", name=NECK_LAYER)(x)
    head_in = layers.Dropout(cfg.dropout)(neck)
    age_z = layers.Dense(1, name="age_z")(head_in)
    age = layers.Rescaling(age_std, offset=age_mean, name="age")(age_z)
    sex_logit = layers.Dense(1, name="sex")(head_in)
    return keras.Model(inputs, {"age": age, "sex": sex_logit}, name="cxr_age_sex")


def with_embedding(model: keras.Model) -> keras.Model:
    """Same weights, three outputs: age, sex logit and the pooled features as `embedding`.

    The pooled conv features, not the small dense layer after them: that layer is trained only
    to predict age and sex, so blank pages, text and noise can land inside its distribution
    (measured on the demo model: the pooled features separate them far better).
    """
    return keras.Model(
        model.inputs,
        {
            "age": model.get_layer("age").output,
            "sex": model.get_layer("sex").output,
            "embedding": model.get_layer(FEATURES_LAYER).output,
        },
    )
