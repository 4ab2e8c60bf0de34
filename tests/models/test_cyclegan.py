"""The CycleGAN LightningModule: photos from the DataModule it is given, the paper's linear LR
decay, and a CLI fit with grids, metrics beside the untranslated baseline, image pools and LR
schedules in the checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import run_fit

from monet.data import MonetDataModule, UnpairedDataModule
from monet.errors import ConfigError
from monet.models import CycleGAN, LinearDecay
from monet.nets import PatchDiscriminator, ResnetGenerator


def test_a_cyclegan_takes_its_photos_from_the_datamodule_it_is_given(kaggle_dir):
    model = CycleGAN(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32))
    with pytest.raises(ConfigError, match="use data.class_path monet.data.UnpairedDataModule"):
        model.sample_inputs(2)  # no DataModule given: the model looks none up
    paintings = MonetDataModule(str(kaggle_dir), image_size=32)
    with pytest.raises(ConfigError) as err:
        model.sample_inputs(2, datamodule=paintings)
    message = str(err.value)
    assert "\n" not in message and "use data.class_path monet.data.UnpairedDataModule" in message
    dm = UnpairedDataModule(str(kaggle_dir), image_size=32)
    dm.setup("fit")
    photos = model.sample_inputs(7, torch.Generator().manual_seed(3), dm)  # 5 photos: repeated
    assert photos.shape == (7, 3, 32, 32) and photos.min() >= -1 and photos.max() <= 1
    again = dm.sample_photos(7, torch.Generator().manual_seed(3))
    assert torch.equal(photos, again) and model._trainer is None
    with pytest.raises(ConfigError, match="painting/photo pairs.*UnpairedDataModule"):
        model.training_step(torch.zeros(1, 3, 32, 32), 0)


def test_a_cyclegan_needs_photos(kaggle_dir, tmp_path):
    model = CycleGAN(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32))
    with pytest.raises(ConfigError, match="UnpairedDataModule"):
        model.sample_inputs(2)
    with pytest.raises(ConfigError, match="pool_size=-1"):
        CycleGAN(model.generator, model.critic, pool_size=-1)
    assert not torch.equal(model.inverse.net[1].weight, model.generator.net[1].weight)


def test_linear_decay_is_the_papers_schedule():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=2e-4)
    schedule = LinearDecay(opt, constant=3, decay=3)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0.0])
    with pytest.raises(ConfigError, match="constant=-1"):
        LinearDecay(opt, constant=-1)


@pytest.mark.slow
def test_trains_from_the_cli_with_grids_metrics_baseline_and_resume_state(kaggle_dir, tmp_path):
    cli = run_fit(
        kaggle_dir,
        tmp_path,
        *("--trainer.max_epochs", "2", "--data.init_args.epoch_size", "8"),
        *("--data.batch_size", "2", "--trainer.log_every_n_steps", "2"),
    )
    model, run = cli.model, Path(cli.trainer.log_dir)
    assert isinstance(model, CycleGAN) and cli.trainer.global_step == 2 * 2 * 4  # G + D steps
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"metrics/swd", "baseline/swd", "val/cycle", "train/cycle", "train/identity"} <= logged
    baseline = [float(r["baseline/swd"]) for r in rows if r.get("baseline/swd")]
    assert len(baseline) == 2 and baseline[0] == baseline[1] > 0  # the photos: scored once
    grid = Image.open(sorted((run / "samples").glob("*.png"))[-1])
    assert grid.size[0] > grid.size[1]  # 16 photos and their 16 paintings, 8 to a row
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["image_pools"]["monet"]["count"] == 16  # 8 batches of 2 into a pool of 50
    assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [2, 2]
