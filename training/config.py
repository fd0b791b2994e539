"""TrainConfig: every knob of a training run, with the reason for its default.

Each field is declared `name: type = field(default=..., metadata={"help": "..."})`: the help text
is the one source of the `python -m training train --help` line (build_parser adds the default).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMATS = ("auto", "spr", "nih", "csv", "dicom", "multi", "phantom")


@dataclass
class TrainConfig:
    """A training run; saved as config.json in the run directory so export can rebuild it."""

    format: str = field(
        default="auto",
        metadata={"help": "dataset layout (training/data.py); auto guesses it from the folder"},
    )
    data: str = field(
        default="",
        metadata={
            "help": (
                "dataset folder; for phantom, where to write it (default: <run-dir>/phantom-data)"
            )
        },
    )
    run_dir: str = field(
        default="runs/default",
        metadata={"help": "where the run's config, checkpoints, metrics and plots are written"},
    )
    image_size: int = field(
        default=256,
        metadata={
            "help": "model input S×S pixels; the demo model uses 64 because its data is 64×64"
        },
    )
    n_phantoms: int = field(
        default=300, metadata={"help": "images generated for --format phantom (alias --n)"}
    )
    backbone: str = field(
        default="cnn",
        metadata={
            "help": "'cnn' (our own small CNN) or a keras.applications name, e.g. DenseNet121"
        },
    )
    weights: str = field(
        default="none", metadata={"help": "initial weights of a keras.applications backbone"}
    )
    width: int = field(
        default=16, metadata={"help": "filters in the first conv block; doubles per block up to 8×"}
    )
    depth: int = field(default=4, metadata={"help": "conv blocks, each halving the resolution"})
    neck_dim: int = field(default=64, metadata={"help": "dense layer shared by the two heads"})
    dropout: float = field(default=0.3, metadata={"help": "dropout rate before and after the neck"})
    epochs: int = field(
        default=60, metadata={"help": "maximum epochs (early stopping may end sooner)"}
    )
    batch_size: int = field(default=32, metadata={"help": "images per training step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "Adam's initial learning rate"})
    weight_decay: float = field(
        default=1e-4, metadata={"help": "L2 penalty on the conv kernels (cnn backbone)"}
    )
    age_loss: str = field(
        default="mae", metadata={"help": "mae (the metric we report) or huber (smooth near zero)"}
    )
    huber_delta: float = field(default=5.0, metadata={"help": "Huber loss delta, in years"})
    patience: int = field(
        default=15,
        metadata={"help": "epochs without a better validation loss before training stops"},
    )
    lr_schedule: str = field(
        default="cosine",
        metadata={
            "help": (
                "cosine (smooth decay to ~0: late epochs are stable) or plateau (halve on stalls)"
            )
        },
    )
    age_weight: float = field(
        default=1.0, metadata={"help": "weight of the age loss relative to the sex loss"}
    )
    augment: bool = field(
        default=True,
        metadata={
            "help": (
                "small rotation/shift/zoom, brightness/contrast on the training split (true/false)"
            )
        },
    )
    val_fraction: float = field(
        default=0.15, metadata={"help": "share of patients in the validation split"}
    )
    test_fraction: float = field(
        default=0.15, metadata={"help": "share of patients in the test split"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the split, phantoms, weights, shuffling"}
    )
    threads: int = field(
        default=2, metadata={"help": "TensorFlow intra-op threads; CI machines are small"}
    )
    workers: int = field(
        default=4, metadata={"help": "image decode threads (Pillow releases the GIL)"}
    )

    # Multi-source training (issue 16).
    leave_out: str = field(
        default="",
        metadata={
            "help": (
                "hold this source out entirely: it becomes the test split (cross-site evaluation); "
                "the other sources are split into train/validation by patient"
            )
        },
    )
    augment_mode: str = field(
        default="light",
        metadata={
            "help": (
                "light: small Keras geometry/brightness changes; site: resolution loss, "
                "window/gamma, "
                "blur/sharpen, noise, crop/zoom/rotation, borders and text markers on every source"
            )
        },
    )
    augment_strength: float = field(
        default=1.0,
        metadata={
            "help": (
                "scales the probability of every site-augmentation step (1: as documented in "
                "augment.py)"
            )
        },
    )
    balance: bool = field(
        default=False,
        metadata={
            "help": ("draw training batches balanced across sources and sex (see --balance-power)")
        },
    )
    balance_power: float = field(
        default=0.5,
        metadata={
            "help": (
                "a source's share of draws is proportional to n_images**power (0: equal, 1: as "
                "pooled)"
            )
        },
    )
    warmup_epochs: int = field(
        default=0, metadata={"help": ("linear learning-rate warm-up before the cosine decay")}
    )
    cache_dir: str = field(
        default="runs/cache",
        metadata={
            "help": (
                "where decoded tensors are cached per dataset and preprocessing ('' = no cache)"
            )
        },
    )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})
