"""TrainConfig: every knob of a training run, with the reason for its default."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FORMATS = ("auto", "spr", "nih", "csv", "dicom", "phantom")


@dataclass
class TrainConfig:
    """A training run; saved as config.json in the run directory so export can rebuild it."""

    format: str = "auto"  # dataset layout; see training/data.py
    data: str = ""  # dataset folder (for phantom: where to write it; default <run_dir>/phantom-data)
    run_dir: str = "runs/default"
    image_size: int = 256  # model input S×S; the demo model uses 64 because its data is 64×64
    n_phantoms: int = 300  # images generated for --format phantom
    backbone: str = "cnn"  # "cnn" (our own) or a keras.applications name, e.g. DenseNet121
    weights: str = "none"  # imagenet|none, for keras.applications backbones
    width: int = 16  # filters in the first conv block; doubles per block up to 8×
    depth: int = 4  # conv blocks (each halves the resolution)
    neck_dim: int = 64  # dense layer shared by the two heads
    dropout: float = 0.3
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    age_loss: str = "mae"  # mae|huber; MAE is the metric we report; Huber is smooth near zero
    huber_delta: float = 5.0  # years
    patience: int = 15  # early stopping on validation loss
    lr_schedule: str = "cosine"  # cosine (smooth decay to ~0: late epochs are stable) | plateau
    age_weight: float = 1.0  # extra weight of the age loss relative to the sex loss
    augment: bool = True  # small rotation/shift/zoom, brightness/contrast (training split only)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    threads: int = 2  # TensorFlow intra-op threads; CI machines are small
    workers: int = 4  # decode threads (Pillow releases the GIL)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})
