"""The synthetic phantom generator: deterministic, any size, cues where its masks say."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from training.phantom import generate_phantom, write_phantom_dataset


def test_deterministic_by_seed():
    a, b, c = generate_phantom(5, 128), generate_phantom(5, 128), generate_phantom(6, 128)
    assert np.array_equal(a.image, b.image) and (a.age, a.male) == (b.age, b.male)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, 333, 1024])
def test_any_size(size):
    s = generate_phantom(1, size)
    assert s.image.shape == s.age_mask.shape == s.sex_mask.shape == (size, size)
    assert s.image.dtype == np.uint8 and 18 <= s.age <= 90


def test_rejects_sizes_out_of_range():
    with pytest.raises(ValueError, match="outside 64–1024"):
        generate_phantom(1, 32)


def _mean_over_seeds(age: float, male: bool, region: str) -> float:
    values = []
    for seed in range(12):
        s = generate_phantom(seed, 128, age=age, male=male)
        mask = s.age_mask if region == "age" else s.sex_mask & ~s.age_mask
        values.append(float(s.image[mask].mean()))
    return float(np.mean(values))


def test_age_cue_lives_in_the_age_mask():
    young, old = _mean_over_seeds(25, True, "age"), _mean_over_seeds(85, True, "age")
    assert young - old > 15  # bones fade with age


def test_sex_cue_lives_in_the_sex_mask():
    means = []
    for seed in range(8):
        f, m = (
            generate_phantom(seed, 128, age=50, male=False),
            generate_phantom(seed, 128, age=50, male=True),
        )
        diff = f.image.astype(int) - m.image.astype(int)
        breasts = f.sex_mask & m.sex_mask & (np.arange(128)[:, None] > 80)  # lower part of the mask
        # Female breast shadows are brighter than male pectoral ones (thorax widths differ too,
        # so edge pixels go both ways).
        assert np.mean(diff[breasts] > 0) > 0.55
        means.append(diff[breasts].mean())
    assert np.mean(means) > 3


def test_cues_stay_inside_their_masks():
    """Changing only the label leaves pixels outside the cue masks (nearly) unchanged."""
    for seed in range(4):
        y, o = (
            generate_phantom(seed, 128, age=25, male=True),
            generate_phantom(seed, 128, age=85, male=True),
        )
        m, f = (
            generate_phantom(seed, 128, age=50, male=True),
            generate_phantom(seed, 128, age=50, male=False),
        )
        outside_age = ~(y.age_mask | o.age_mask)
        outside_sex = ~(m.sex_mask | f.sex_mask)
        d_age = np.abs(y.image.astype(int) - o.image.astype(int))
        d_sex = np.abs(m.image.astype(int) - f.image.astype(int))
        assert d_age[y.age_mask].mean() > 3 * d_age[outside_age].mean()
        assert d_sex[f.sex_mask].mean() > 3 * d_sex[outside_sex].mean()


def test_write_dataset(tmp_path):
    labels = write_phantom_dataset(tmp_path, 6, size=64, seed=2)
    rows = list(csv.DictReader(labels.open()))
    assert len(rows) == 6 and {r["sex"] for r in rows} <= {"M", "F"}
    assert all((tmp_path / r["path"]).is_file() for r in rows)
