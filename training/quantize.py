"""`python -m training.quantize`: opt-in INT8 static QDQ quantisation of model.onnx, with its
speed-up and accuracy change on the run's test split.

Calibration uses real images of the run's *training* split (never the test split), decoded by
cxr/imaging.py exactly as the service decodes them. The INT8 model and a card carrying its
own sha256 and metrics go to --out; serve it with `MODEL_DIR=<out> python -m service`.

Weights are UINT8 like the activations (U8U8): x86-64 CPUs without VNNI run ORT's fused U8S8
kernels through VPMADDUBSW, whose int16 sums saturate (measured on such a CPU: max |Δ| 0.56 with
the fused kernels vs 0.13 node by node). U8U8 kernels widen to int16 first and do not saturate;
on a VNNI CPU U8U8 and U8S8 gave the same error here (0.133), while 7-bit `reduce_range` weights
were 3× worse (0.434). Accuracy can still differ between CPUs, so the report and the INT8 card
record which CPU features measured it: rerun this on the serving machine before switching.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from cxr.card import file_sha256, load_card, write_card
from cxr.runtime import session_options
from training.loading import load_images
from training.metrics import all_metrics
from training.splits import read_split

logger = logging.getLogger("training.quantize")
MAE_TOLERANCE = 0.2  # years: the bar for shipping INT8 by default
AUC_TOLERANCE = 0.005


class ImageReader(CalibrationDataReader):
    """Feeds calibration batches of preprocessed real images to the calibrator."""

    def __init__(self, images: npt.NDArray[np.uint8], input_name: str, batch: int = 16) -> None:
        x = images[..., None].astype(np.float32)
        self._batches = iter([{input_name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self._batches, None)


def cpu_features() -> dict[str, Any]:
    """What decides which INT8 kernels ORT runs here (x86-64 flags from /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        flags = set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni")}


def find_run(sha256: str) -> Path:
    """The run whose exported card has the served model's sha256 (export copies it there)."""
    for path in Path("runs").glob("*/model.json"):
        try:
            if json.loads(path.read_text()).get("sha256") == sha256:
                return path.parent
        except (OSError, ValueError):
            continue
    raise SystemExit("error: no runs/*/model.json matches the model's sha256; pass --run-dir")


def predict(
    model: Path, x: npt.NDArray[np.float32], threads: int = 1, *, fused: bool = True
) -> dict[str, npt.NDArray[Any]]:
    """age and p_male for every row, through ORT with the service's session options (or with
    graph optimisation off: `fused=False` runs the QDQ graph node by node)."""
    opts = session_options(threads)
    if not fused:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        str(model), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    outs = [session.run(names, {"image": x[i : i + 64]}) for i in range(0, len(x), 64)]
    return {
        n: np.concatenate([o[k] for o in outs]).reshape(len(x), -1) for k, n in enumerate(names)
    }


def speed(model: Path, size: int, batch: int, seconds: float = 2.0) -> dict[str, float]:
    """Rows/s and CPU ms per row, one ORT thread (the service's setting under load)."""
    session = ort.InferenceSession(
        str(model), sess_options=session_options(1), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 1)).astype(np.float32)
    session.run(None, {"image": x})
    n, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {"image": x})
        n += batch
    return {
        "rows_per_s": n / (time.perf_counter() - t0),
        "cpu_ms_per_row": (time.process_time() - cpu0) * 1000 / n,
    }


def quantize(model: Path, out: Path, calibration: npt.NDArray[np.uint8]) -> None:
    """Static QDQ: UINT8 weights per channel and UINT8 activations (U8U8, see above), min-max
    calibrated."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            ImageReader(calibration, "image"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def main(argv: list[str] | None = None) -> int:
    """Quantise, evaluate both models on the test split, time both, write --out."""
    p = argparse.ArgumentParser(
        prog="python -m training.quantize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model-dir", type=Path, default=Path("models"))
    p.add_argument(
        "--run-dir", type=Path, help="training run with split.csv (default: found by sha256)"
    )
    p.add_argument("--out", type=Path, default=Path("results/int8"))
    p.add_argument("--calibration-images", type=int, default=256)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    typed = load_card(args.model_dir / "model.json")
    card = typed.public()
    params = typed.params
    run_dir = args.run_dir or find_run(typed.sha256)
    records, names = read_split(run_dir / "split.csv")
    split_of = {r.path: s for r, s in zip(records, names, strict=True)}
    images, kept = load_images(records, params)
    split = np.array([split_of[r.path] for r in kept])
    age = np.array([r.age for r in kept])
    male = np.array([r.male for r in kept])
    train_idx = np.flatnonzero(split == "train")
    rng = np.random.default_rng(0)
    calib = images[rng.permutation(train_idx)[: args.calibration_images]]
    logger.info(
        "run %s: %d images; calibrating on %d training images", run_dir, len(kept), len(calib)
    )

    args.out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = args.model_dir / "model.onnx", args.out / "model.onnx"
    quantize(fp32, int8, calib)
    x = images[..., None].astype(np.float32)
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "calibration_images": len(calib),
        "method": "onnxruntime static QDQ, per-channel UINT8 weights, "
        "UINT8 activations (U8U8), MinMax calibration",
        "measured_on_cpu": cpu_features(),
        "models": {},
    }
    for label, path in (("fp32", fp32), ("int8", int8)):
        pred = predict(path, x)
        metrics = {
            s: all_metrics(
                age[split == s],
                male[split == s],
                pred["age"][split == s, 0],
                pred["p_male"][split == s, 0],
            )
            for s in ("validation", "test")
        }
        report["models"][label] = {
            "bytes": path.stat().st_size,
            "metrics": metrics,
            "speed_batch1": speed(path, params.size, 1),
            "speed_batch16": speed(path, params.size, 16),
        }
    f, q = report["models"]["fp32"], report["models"]["int8"]
    d_mae = q["metrics"]["test"]["age_mae"] - f["metrics"]["test"]["age_mae"]
    d_auc = q["metrics"]["test"]["sex_auc"] - f["metrics"]["test"]["sex_auc"]
    within = abs(d_mae) <= MAE_TOLERANCE and abs(d_auc) <= AUC_TOLERANCE
    report["change_test"] = {"age_mae": d_mae, "sex_auc": d_auc}
    report["speedup"] = {
        b: f[f"speed_{b}"]["cpu_ms_per_row"] / q[f"speed_{b}"]["cpu_ms_per_row"]
        for b in ("batch1", "batch16")
    }
    report["verdict"] = (
        "within tolerance (±0.2 y MAE, ±0.005 AUC): could be the default"
        if within
        else "accuracy moves past tolerance: opt-in only"
    )
    int8_card = {
        **card,
        "version": f"{card['version']}-int8",
        "sha256": file_sha256(int8),
        "metrics": {**card.get("metrics", {}), **q["metrics"]},
        "quantization": {
            k: report[k]
            for k in (
                "method",
                "calibration_images",
                "measured_on_cpu",
                "change_test",
                "speedup",
                "verdict",
            )
        },
    }
    write_card(int8_card, args.out / "model.json")
    (args.out / "quantize_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'':10}{'age MAE':>10}{'sex AUC':>10}{'ms/row b1':>11}{'ms/row b16':>12}{'MB':>7}")
    for label, m in report["models"].items():
        t = m["metrics"]["test"]
        print(
            f"{label:10}{t['age_mae']:10.3f}{t['sex_auc']:10.4f}"
            f"{m['speed_batch1']['cpu_ms_per_row']:11.3f}{m['speed_batch16']['cpu_ms_per_row']:12.3f}"
            f"{m['bytes'] / 1e6:7.2f}"
        )
    print(
        f"test change: age MAE {d_mae:+.3f} y, sex AUC {d_auc:+.4f}; CPU speed-up "
        f"{report['speedup']['batch1']:.2f}× (batch 1), {report['speedup']['batch16']:.2f}× "
        f"(batch 16) → {report['verdict']}"
    )
    print(f"wrote {args.out}/model.onnx, model.json, quantize_report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
