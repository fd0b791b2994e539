"""CLI: `python -m training train|evaluate|export …`."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

from training.config import FORMATS, TrainConfig

CHOICES = {"format": FORMATS, "age_loss": ("mae", "huber"), "lr_schedule": ("cosine", "plateau"),
           "weights": ("none", "imagenet")}


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """Every TrainConfig field becomes a --flag on `train` with its default shown."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model into --run-dir, then evaluate it",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = _bool if isinstance(default, bool) else type(default)
        kwargs = {"choices": CHOICES[f.name]} if f.name in CHOICES else {}
        train.add_argument(flag, type=kind, default=default, **kwargs)
    train.add_argument("--n", dest="n_phantoms", type=int, help="alias of --n-phantoms")
    evaluate = sub.add_parser("evaluate", help="metrics of a run's best model on its test split")
    evaluate.add_argument("--run-dir", required=True)
    export = sub.add_parser("export", help="ONNX + model card, behind the parity gate")
    export.add_argument("--run-dir", required=True)
    export.add_argument("--out", default="models")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--version", default="1.0.0")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from training.data import DataError

    try:
        if args.command == "train":
            from training.train import train

            values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
            train(TrainConfig(**values))
        elif args.command == "evaluate":
            from training.evaluate import evaluate_run
            from training.tfsetup import setup_tensorflow

            cfg = TrainConfig.load(Path(args.run_dir) / "config.json")
            setup_tensorflow(cfg.threads, cfg.seed)
            evaluate_run(args.run_dir)
        else:
            from training.export import export_run

            export_run(args.run_dir, args.out, opset=args.opset, version=args.version)
    except (DataError, FileNotFoundError, ValueError) as exc:
        logging.getLogger("training").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
