"""SampleGrid: grids at the epochs asked for, from fixed noise that is saved in its state and
drawn again from the same seed."""

from __future__ import annotations

import torch
from support import tiny_gan, trainer

from monet.callbacks import SampleGrid
from monet.data import MonetDataModule


def test_sample_grid_uses_fixed_noise(kaggle_dir, tmp_path):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=4)
    grid = SampleGrid(every_n_epochs=1, num_samples=4, nrow=2)
    t = trainer(tmp_path, max_steps=-1, max_epochs=2, callbacks=[grid])
    model = tiny_gan()
    t.fit(model, dm)
    files = sorted((tmp_path / "samples").glob("*.png"))
    # 3 critic steps an epoch; the 5th critic step brings a generator step: 3, then 3 + 3 + 1
    assert [f.name for f in files] == ["epoch=0000-step=0000003.png", "epoch=0001-step=0000007.png"]
    noise = grid.noise.clone()
    assert torch.equal(grid.state_dict()["noise"], noise)
    again = SampleGrid(num_samples=4)
    again.on_fit_start(t, model)
    assert torch.equal(again.noise, noise)  # same seed, same noise
