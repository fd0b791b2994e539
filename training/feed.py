"""Training batches for multi-source data: balanced draws across sources and sex, site augmentation.

Drawing uniformly from the pooled images would let the largest source (NIH) dominate and tie its
sex/age mix to its look. Each epoch instead draws (with replacement) so that a source's share is
∝ n_source^balance_power (0 = every source alike, 1 = as pooled) and, inside a source, each sex
gets half.
"""

from __future__ import annotations

from collections import Counter

import keras
import numpy as np
import numpy.typing as npt

from training.augment import augment_batch


def sampling_weights(
    sources: list[str], male: npt.NDArray[np.bool_], power: float = 0.5
) -> npt.NDArray[np.float64]:
    """Per-image draw probability: source share ∝ n^power, then half per sex inside the source."""
    n_source = Counter(sources)
    n_cell = Counter(zip(sources, male.tolist(), strict=True))
    share = {s: n**power for s, n in n_source.items()}
    total = sum(share.values())
    w = np.array(
        [
            share[s] / total / (2 if n_cell[(s, not m)] else 1) / n_cell[(s, m)]
            for s, m in zip(sources, male.tolist(), strict=True)
        ]
    )
    return w / w.sum()


class SiteBatches(keras.utils.PyDataset):
    """Epochs of `len(images)` draws; images augmented in numpy/Pillow on the fly."""

    def __init__(
        self,
        images: npt.NDArray[np.uint8],
        age: npt.NDArray[np.float32],
        male: npt.NDArray[np.bool_],
        sources: list[str],
        batch_size: int,
        *,
        seed: int,
        balance: bool,
        balance_power: float,
        augment: bool,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        self.images, self.age, self.male = images, age.astype(np.float32), male.astype(np.float32)
        self.batch_size, self.augment, self.strength = batch_size, augment, strength
        self.rng = np.random.default_rng(seed)
        self.p = sampling_weights(sources, male, balance_power) if balance else None
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        n = len(self.images)
        if self.p is None:
            self.order = self.rng.permutation(n)
        else:
            self.order = self.rng.choice(n, size=n, replace=True, p=self.p)

    def __len__(self) -> int:
        return int(np.ceil(len(self.images) / self.batch_size))

    def __getitem__(self, index: int):
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.augment:
            x = augment_batch(self.images[idx], self.rng, self.strength)
        else:
            x = self.images[idx][..., None].astype(np.float32)
        return x, {"age": self.age[idx, None], "sex": self.male[idx, None]}
