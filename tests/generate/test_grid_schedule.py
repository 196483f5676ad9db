"""Sample grids scale with training: by default (``grid_every: auto``) a run writes a grid at every
fifth of its steps and at the end, whatever its length."""

from __future__ import annotations

import pytest

from setforge.context import StepContext
from setforge.plugins.generate.dcgan import DCGAN as DCGan
from setforge.testing import sample_dataset


@pytest.mark.parametrize("steps, expected", [(20, [4, 8, 12, 16, 20]), (13, [2, 4, 6, 8, 10, 12, 13])])
def test_auto_grid_every_gives_at_least_four_grids_and_the_final_one(tmp_path, steps, expected):
    ds = sample_dataset("image")
    ctx = StepContext.from_seed(0, workdir=tmp_path)
    generator = DCGan({"steps": steps, "batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4,
                       "checkpoint_every": 100})
    generator.fit(ds, ctx)
    written = sorted(int(p.stem.split("-")[1]) for p in tmp_path.glob("samples-*.png"))
    assert written == expected and len(written) >= 5


def test_grid_every_zero_writes_none(tmp_path):
    ctx = StepContext.from_seed(0, workdir=tmp_path)
    DCGan({"steps": 6, "batch_size": 16, "width": 8, "latent_dim": 8, "embedding_dim": 4, "grid_every": 0}).fit(
        sample_dataset("image"), ctx)
    assert not list(tmp_path.glob("samples-*.png"))
