"""`python -m training … --help` explains every flag, from TrainConfig's one source of help."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from training.__main__ import build_parser, next_steps
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_config_field_declares_its_help() -> None:
    missing = [f.name for f in fields(TrainConfig) if not f.metadata.get("help")]
    assert not missing, f"TrainConfig fields without metadata['help']: {missing}"


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_no_flag_lacks_help(command: str) -> None:
    parser = subcommands()[command]
    bare = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not bare, f"{command}: flags without help: {bare}"


def test_train_help_shows_each_flag_with_help_and_default() -> None:
    text = subcommands()["train"].format_help()
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        default = getattr(defaults, f.name)
        if default != "":
            assert f"(default: {default})" in " ".join(text.split()), flag


def test_help_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", "train", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--learning-rate" in done.stdout and "(default: 0.002)" in done.stdout


def test_export_version_is_the_runs_own_unless_given() -> None:
    export = subcommands()["export"]
    assert export.parse_args(["--run-dir", "r"]).version is None
    assert export.parse_args(["--run-dir", "r", "--version", "2.1.0"]).version == "2.1.0"


def test_next_steps_quotes_the_run_dir() -> None:
    text = next_steps("runs/my run")
    assert "run saved in runs/my run/" in text
    assert "python -m training export --run-dir 'runs/my run' --out models" in text
