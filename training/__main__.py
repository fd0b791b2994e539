"""Train, evaluate and export the chest X-ray age & sex model: `python -m training COMMAND --help`.

A first run on synthetic phantoms (about a minute on 2 cores), then its export for the API:
  python -m training train --format phantom --n 64 --epochs 1 --image-size 64 --run-dir runs/try
  python -m training export --run-dir runs/try --out runs/try/models
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from training.config import FORMATS, TrainConfig

CHOICES = {
    "format": FORMATS,
    "age_loss": ("mae", "huber"),
    "lr_schedule": ("cosine", "plateau"),
    "weights": ("none", "imagenet"),
}


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to each flag's help; required flags and unset defaults explain
    themselves."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default == "":
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Every TrainConfig field becomes a --flag on `train`, with its metadata["help"] and default."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export}")
    helpful = {"formatter_class": _HelpFormatter}
    train = sub.add_parser(
        "train",
        help="train a model into --run-dir, then evaluate it",
        description="Train, then evaluate on the test split; prints the export command at the end.",
        **helpful,
    )
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = _bool if isinstance(default, bool) else type(default)
        kwargs = {"choices": CHOICES[f.name]} if f.name in CHOICES else {}
        train.add_argument(flag, type=kind, default=default, help=f.metadata.get("help"), **kwargs)
    train.add_argument(
        "--n", dest="n_phantoms", type=int, default=argparse.SUPPRESS, help="alias of --n-phantoms"
    )
    evaluate = sub.add_parser(
        "evaluate", help="metrics of a run's best model on its test split", **helpful
    )
    evaluate.add_argument("--run-dir", required=True, help="a run directory written by `train`")
    export = sub.add_parser("export", help="ONNX + model card, behind the parity gate", **helpful)
    export.add_argument("--run-dir", required=True, help="a run directory written by `train`")
    export.add_argument(
        "--out",
        default="models",
        help="folder for model.onnx + model.json (the API serves models/)",
    )
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    export.add_argument(
        "--version",
        default=None,
        help="model version in the card (default: the run's date + a short hash "
        "of its config, e.g. 20261202-1a2b3c4d)",
    )
    return parser


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ and absl start-up chatter; our own INFO lines stay."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import absl.logging
    except ImportError:
        return
    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def next_steps(run_dir: str) -> str:
    """Where the run is and the exact command that exports it."""
    return (
        f"\nrun saved in {run_dir}/ (config.json, best.keras, metrics.json, plots)\n"
        f"export it for serving:\n"
        f"  python -m training export --run-dir {shlex.quote(run_dir)} --out models\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"] and "--mismatch" in argv:  # wrong-patient check (#12)
        from training.mismatch import main as mismatch_main

        return mismatch_main([a for a in argv[1:] if a != "--mismatch"])
    args = build_parser().parse_args(argv)
    from training.data import DataError

    try:
        if args.command == "train":
            from training.train import train

            values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
            run_dir = train(TrainConfig(**values))
            print(next_steps(str(run_dir)), flush=True)
        elif args.command == "evaluate":
            from training.evaluate import evaluate_run
            from training.tfsetup import setup_tensorflow

            cfg = TrainConfig.load(Path(args.run_dir) / "config.json")
            setup_tensorflow(cfg.threads, cfg.seed)
            evaluate_run(args.run_dir)
        else:
            quiet_tensorflow()
            from training.export import export_run

            export_run(args.run_dir, args.out, opset=args.opset, version=args.version)
    except (DataError, FileNotFoundError, ValueError) as exc:
        logging.getLogger("training").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
