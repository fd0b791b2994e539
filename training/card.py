"""Builds the model card of a training run. The schema, validation, JSON form and sha256 live in
cxr/card.py; this module only fills it in."""

from __future__ import annotations

import datetime as dt

from cxr.card import ModelCard, Preprocessing, parse_card
from cxr.imaging import PreprocessParams
from training.config import TrainConfig

INTENDED_USE = (
    "Research demo: estimate a patient's age and sex from a frontal chest radiograph to flag "
    "possible patient-identification errors (an image filed under the wrong patient). "
    "Adults; PA/AP views."
)
DISCLAIMER = "Research demo, not for clinical use."


def framework_versions(opset: int) -> dict[str, object]:
    """Versions of what built the artifact."""
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx_opset": opset,
    }


def build_card(
    *,
    cfg: TrainConfig,
    data: dict,
    metrics: dict,
    trust: dict,
    sha256: str,
    opset: int,
    parity: dict,
    version: str,
    embedding_dim: int,
) -> ModelCard:
    """Assemble model.json following docs/contracts.md (later keys are additive); validated."""
    s = cfg.image_size
    return parse_card(
        {
            "name": "cxr-age-sex",
            "version": version,
            "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "input": {
                "name": "image",
                "shape": [None, s, s, 1],
                "dtype": "float32",
                "layout": "NHWC",
                "value_range": [0, 255],
            },
            "preprocessing": Preprocessing.of(PreprocessParams(size=s)).model_dump(),
            "outputs": [
                {
                    "name": "age",
                    "shape": [None, 1],
                    "dtype": "float32",
                    "unit": "years",
                    "meaning": "predicted age in years",
                },
                {
                    "name": "p_male",
                    "shape": [None, 1],
                    "dtype": "float32",
                    "meaning": "P(male): probability the patient is male (temperature-calibrated)",
                },
                {
                    "name": "embedding",
                    "shape": [None, embedding_dim],
                    "dtype": "float32",
                    "meaning": (
                        "globally pooled conv features, for the input guard (see input_guard)"
                    ),
                },
            ],
            "architecture": {
                "backbone": cfg.backbone,
                "width": cfg.width,
                "depth": cfg.depth,
                "neck_dim": cfg.neck_dim,
                "embedding_dim": embedding_dim,
                "age_loss": cfg.age_loss,
            },
            "training_data": {
                "dataset": data["dataset"],
                "images": data["images"],
                "split": data["split"],
            },
            "metrics": metrics,
            "age_interval": trust["age_interval"],
            "sex_calibration": trust["sex_calibration"],
            "input_guard": trust["input_guard"],
            "export_parity": parity,
            "frameworks": framework_versions(opset),
            "sha256": sha256,
            "intended_use": INTENDED_USE,
            "disclaimer": DISCLAIMER,
        },
        "model card being built",
    )
