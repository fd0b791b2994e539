"""`python -m training export`: Keras → ONNX (tf2onnx) behind a parity gate, plus the model card.

The gate runs ONNX Runtime and Keras on ≥ 32 real images re-read from disk through the serving
preprocessing; if any output differs by more than 1e-4, nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from cxr.card import file_sha256, write_card
from training.card import build_card
from training.config import TrainConfig

logger = logging.getLogger(__name__)
PARITY_IMAGES = 32
PARITY_TOLERANCE = 1e-4
OUTPUTS = ("age", "p_male", "embedding")


class ParityError(RuntimeError):
    """ONNX Runtime and Keras disagree: the artifact is not written."""


# Lines TensorFlow's C++ core writes through absl straight to fd 2 during conversion (grappler's
# "Starting new session", GPU probing); TF_CPP_MIN_LOG_LEVEL does not reach them.
NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} )")


@contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Hold back what native code writes to fd 2; replay all but NATIVE_NOISE afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines()
            kept = [line for line in lines if not NATIVE_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def convert(model, image_size: int, temperature: float, opset: int) -> bytes:
    """The Keras model as ONNX bytes: input `image`, outputs age, p_male (calibrated), embedding."""
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(image, training=False)
        # Temperature scaling lives in the graph, so every consumer gets the calibrated P(male).
        p_male = tf.sigmoid(out["sex"] / tf.constant(temperature, tf.float32))
        return {
            "age": tf.identity(out["age"], name="age"),
            "p_male": tf.identity(p_male, name="p_male"),
            "embedding": tf.identity(out["embedding"], name="embedding"),
        }

    with native_stderr_filtered():
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    _name_batch_axis(proto)
    return proto.SerializeToString()


def _name_batch_axis(proto) -> None:
    """tf2onnx names the dynamic axis unk__N; call it `batch` on the input and every output."""
    for value in [*proto.graph.input, *proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    names = {o.name for o in proto.graph.output}
    if names != set(OUTPUTS) or [i.name for i in proto.graph.input] != ["image"]:
        raise RuntimeError(
            f"exported graph has inputs {[i.name for i in proto.graph.input]} "
            f"and outputs {sorted(names)}; expected ['image'] and {list(OUTPUTS)}"
        )


def check_parity(onnx_bytes: bytes, model, images: np.ndarray, temperature: float) -> dict:
    """Max |ONNX − Keras| per output on real images; raise ParityError above the tolerance."""
    import onnxruntime as ort

    from training.calibration import sigmoid

    if len(images) < PARITY_IMAGES:
        raise ParityError(
            f"parity gate needs ≥ {PARITY_IMAGES} real images; the run has {len(images)}"
        )
    x = images[..., None].astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"image": x}), strict=True)
    )
    ref = model.predict(x, batch_size=len(x), verbose=0)
    want = {
        "age": np.asarray(ref["age"]),
        "embedding": np.asarray(ref["embedding"]),
        "p_male": sigmoid(np.asarray(ref["sex"], np.float64) / temperature),
    }
    diffs = {k: float(np.max(np.abs(got[k].astype(np.float64) - want[k]))) for k in OUTPUTS}
    report = {
        "images": len(x),
        "max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
        "tolerance": PARITY_TOLERANCE,
    }
    bad = {k: v for k, v in diffs.items() if v > PARITY_TOLERANCE}
    if bad:
        raise ParityError(
            f"ONNX Runtime differs from Keras on {len(x)} images: {bad} > {PARITY_TOLERANCE}"
        )
    return report


def run_version(run_dir: Path) -> str:
    """A version of the run's own: its start date (UTC) + a short hash of its config.json."""
    config = run_dir / "config.json"
    day = datetime.fromtimestamp(config.stat().st_mtime, UTC).strftime("%Y%m%d")
    canonical = json.dumps(json.loads(config.read_text()), sort_keys=True).encode()
    return f"{day}-{hashlib.sha256(canonical).hexdigest()[:8]}"


def measure_ort_ms(onnx_bytes: bytes, image_size: int, repeats: int = 60) -> dict:
    """Median and 90th-percentile ONNX Runtime time for one image on ONE CPU thread."""
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, image_size, image_size, 1)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"image": x})
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "ort_ms_per_image_1_thread_median": round(float(np.median(times)), 2),
        "ort_ms_per_image_1_thread_p90": round(float(np.percentile(times, 90)), 2),
        "measured_on": "batch 1, intra_op_num_threads=1, CPUExecutionProvider, "
        "shared build machine",
    }


def _card_extras(cfg: TrainConfig, data: dict, onnx_bytes: bytes) -> dict:
    """Additive card keys: per-source data terms, non-commercial notice, speed, training recipe."""
    extras: dict = {"performance": measure_ort_ms(onnx_bytes, cfg.image_size)}
    if data.get("sources"):
        from training.sources import NON_COMMERCIAL, source_terms

        counts = {s: sum(v.values()) for s, v in data["sources"].items()}
        extras["licence"] = NON_COMMERCIAL
        extras["data_sources"] = {
            s: {**terms, "split": data["sources"][s]}
            for s, terms in source_terms(Path(cfg.data), counts).items()
        }
        extras["training_recipe"] = {
            "image_size": cfg.image_size,
            "augment_mode": cfg.augment_mode,
            "balance": cfg.balance,
            "balance_power": cfg.balance_power,
            "learning_rate": cfg.learning_rate,
            "warmup_epochs": cfg.warmup_epochs,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
        }
    return extras


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int = 17,
    version: str | None = None,
    loso_dir: str | Path | None = None,
) -> Path:
    """Export the run's best model into out_dir (model.onnx + model.json); return the ONNX path.

    version: the card's model version; None gives the run's own (run_version).
    With loso_dir (a `python -m training loso` output), the card's intervals and guard threshold
    are the cross-site ones and its metrics lead with the held-out-source table.
    """
    from training.tfsetup import setup_tensorflow

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = TrainConfig.load(run_dir / "config.json")
    version = version or run_version(run_dir)
    setup_tensorflow(cfg.threads, cfg.seed)
    from training.evaluate import load_run_model, load_split_images

    if opset < 17:
        raise ValueError(f"opset {opset} is too old; use 17 or newer")
    trust = json.loads((run_dir / "trust.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    if loso_dir:
        from training.crosssite import cross_site_card

        trust, metrics = cross_site_card(run_dir, Path(loso_dir), trust, metrics)
    temperature = float(trust["sex_calibration"]["temperature"])
    model = load_run_model(run_dir)
    onnx_bytes = convert(model, cfg.image_size, temperature, opset)

    # Real images, re-read from disk: test first, then validation, then training if too few.
    images, _, names = load_split_images(run_dir, cfg)
    order = np.concatenate([np.flatnonzero(names == s) for s in ("test", "validation", "train")])
    parity = check_parity(onnx_bytes, model, images[order[: max(PARITY_IMAGES, 64)]], temperature)
    logger.info("parity gate passed: %s", parity)

    # Write into a temporary folder and move into place, so a failure leaves no half artifact.
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(onnx_bytes)
        card = build_card(
            cfg=cfg,
            data=data,
            metrics=metrics,
            trust=trust,
            sha256=file_sha256(onnx_path),
            opset=opset,
            parity=parity,
            version=version,
            embedding_dim=int(model.get_layer("features").output.shape[-1]),
        )
        # Additive keys (cross-site numbers live in metrics/trust; these are new top-level keys).
        card = {**card.public(), **_card_extras(cfg, data, onnx_bytes)}
        write_card(card, Path(tmp) / "model.json")
        shutil.move(onnx_path, out_dir / "model.onnx")
        shutil.move(Path(tmp) / "model.json", out_dir / "model.json")
    shutil.copy(out_dir / "model.json", run_dir / "model.json")
    logger.info(
        "wrote %s (%d bytes) and its card, version %s",
        out_dir / "model.onnx",
        len(onnx_bytes),
        version,
    )
    return out_dir / "model.onnx"
