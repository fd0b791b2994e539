"""Baseline 3, the seed-style server: Flask's built-in server + Keras `model.predict` per request.

This is how the course project deploys the model; the benchmark compares the real service with it.
`python -m benchmarks.seed_server` reads HOST, PORT, KERAS_CHECKPOINT (a .keras file, or empty for
the same architecture with random weights: speed does not depend on the values) and IMAGE_SIZE.
Decoding uses service/imaging.py, so only the serving stack differs, not the image work.
"""

from __future__ import annotations

import math
import os
import sys

from flask import Flask, jsonify, request

from cxr.imaging import PreprocessParams, preprocess_bytes


def load_keras_model(checkpoint: str, image_size: int):
    """The run's checkpoint, or training/'s builder with random weights when there is none."""
    import keras

    if checkpoint:
        return keras.models.load_model(checkpoint, compile=False)
    from training.config import TrainConfig
    from training.model import build_model

    return build_model(TrainConfig(image_size=image_size), age_mean=50.0, age_std=19.0)


def create_app(checkpoint: str, image_size: int) -> Flask:
    """One route, /predict, answering like the course project: decode, model.predict, JSON."""
    model = load_keras_model(checkpoint, image_size)
    params = PreprocessParams(size=image_size)
    app = Flask(__name__)

    @app.get("/ready")
    def ready():
        return {"ready": True}

    @app.post("/predict")
    def predict():
        x = preprocess_bytes(request.files["file"].read(), params)[None]
        out = model.predict(x, verbose=0)
        p_male = 1 / (1 + math.exp(-float(out["sex"][0, 0])))
        return jsonify(
            age_years=float(out["age"][0, 0]),
            p_male=p_male,
            sex="male" if p_male >= 0.5 else "female",
        )

    return app


def main() -> int:
    """Serve on HOST:PORT with Flask's threaded development server (as the seed did)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app = create_app(
        os.environ.get("KERAS_CHECKPOINT", ""), int(os.environ.get("IMAGE_SIZE", "64"))
    )
    app.run(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "5000")),
        threaded=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
