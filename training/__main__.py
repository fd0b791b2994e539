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
    "augment_mode": ("light", "site"),
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
    """Every TrainConfig field becomes a --flag on `train`, with its metadata["help"] and
    default."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{train,loso,evaluate,export}"
    )
    helpful = {"formatter_class": _HelpFormatter}
    train = sub.add_parser(
        "train",
        help="train a model into --run-dir, then evaluate it",
        description="Train, then evaluate on the test split; prints the export command at the end.",
        **helpful,
    )
    _add_config_flags(train)
    loso = sub.add_parser(
        "loso",
        help="leave-one-source-out: one run per held-out source, pooled table",
        description="Train once per source with >= --min-images images, holding it out as the "
        "test split; print the per-source and pooled table; write loso.json.",
        **helpful,
    )
    _add_config_flags(loso)
    loso.add_argument("--out-dir", default="runs/loso", help="one run folder per held-out source")
    loso.add_argument(
        "--min-images",
        type=int,
        default=100,
        help="hold out sources with at least this many images",
    )
    loso.add_argument(
        "--sources",
        default="",
        help="comma-separated sources to hold out (default: all big enough)",
    )
    evaluate = sub.add_parser(
        "evaluate", help="metrics of a run's best model on its test split", **helpful
    )
    evaluate.add_argument("--run-dir", required=True, help="a run directory written by `train`")
    evaluate.add_argument("--by-source", action="store_true", help="also print per-source tables")
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
    export.add_argument(
        "--loso-dir",
        default="",
        help="take the cross-site trust numbers from this `loso` output folder",
    )
    return parser


def _add_config_flags(sub: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a --flag, with its metadata["help"] and default."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kind = _bool if isinstance(default, bool) else type(default)
        kwargs = {"choices": CHOICES[f.name]} if f.name in CHOICES else {}
        sub.add_argument(flag, type=kind, default=default, help=f.metadata.get("help"), **kwargs)
    sub.add_argument(
        "--n", dest="n_phantoms", type=int, default=argparse.SUPPRESS, help="alias of --n-phantoms"
    )


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
        elif args.command == "loso":
            from training.crosssite import run_loso

            values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
            run_loso(
                TrainConfig(**values),
                args.out_dir,
                args.min_images,
                [s for s in args.sources.split(",") if s] or None,
            )
        elif args.command == "evaluate":
            from training.evaluate import evaluate_run
            from training.tfsetup import setup_tensorflow

            cfg = TrainConfig.load(Path(args.run_dir) / "config.json")
            setup_tensorflow(cfg.threads, cfg.seed)
            evaluate_run(args.run_dir)
            if args.by_source:
                from training.crosssite import load_preds, print_table, source_table

                preds = load_preds(Path(args.run_dir))
                for split in ("validation", "test"):
                    print_table(source_table(preds, split), f"{split} split by source")
        else:
            quiet_tensorflow()
            from training.export import export_run

            export_run(
                args.run_dir,
                args.out,
                opset=args.opset,
                version=args.version,
                loso_dir=args.loso_dir or None,
            )
    except (DataError, FileNotFoundError, ValueError) as exc:
        logging.getLogger("training").error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
