"""The GAN LightningModule under a real Trainer: the n_critic cycle, logging, size checks."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support import quiet_trainer

from monet.callbacks import SampleGrid
from monet.data import MonetDataModule
from monet.errors import ConfigError
from monet.models import GAN
from monet.nets import WGANCritic, WGANGenerator


def tiny_gan(size=32, **kw) -> GAN:
    return GAN(
        WGANGenerator(latent_dim=8, features=4, image_size=size),
        WGANCritic(features=4, image_size=size),
        **kw,
    )


class StepOrder(L.Callback):
    def __init__(self) -> None:
        self.order: list[str] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        gen = optimizer.param_groups[0]["params"][0] is next(pl_module.generator.parameters())
        self.order.append("G" if gen else "C")


def trainer(tmp_path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"max_steps": 14, **kw})


@pytest.mark.parametrize("n_critic", [1, 3, 5])
def test_one_generator_step_after_exactly_n_critic_steps(kaggle_dir, tmp_path, n_critic):
    order = StepOrder()
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=2)  # 6 batches an epoch
    model = tiny_gan(n_critic=n_critic)
    trainer(tmp_path, callbacks=[order], max_steps=4 * (n_critic + 1)).fit(model, dm)
    cycle = ["C"] * n_critic + ["G"]
    assert order.order == cycle * 4  # the cycle runs on across epoch boundaries
    assert model.critic_steps == 4 * n_critic


def test_training_changes_both_networks_and_logs(kaggle_dir, tmp_path):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=4)
    model = tiny_gan(n_critic=2)
    g0 = [p.clone() for p in model.generator.parameters()]
    c0 = [p.clone() for p in model.critic.parameters()]
    t = trainer(tmp_path, max_steps=6, limit_val_batches=1)
    t.fit(model, dm)
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(c0, model.critic.parameters()))
    logged = set(t.logged_metrics)
    assert {
        "train/critic_loss",
        "train/gen_loss",
        "train/wasserstein",
        "train/gradient_penalty",
        "val/wasserstein",
    } <= logged


def test_image_size_mismatch_fails_before_training(kaggle_dir, tmp_path):
    dm = MonetDataModule(str(kaggle_dir), image_size=64)
    with pytest.raises(ConfigError, match=r"generator is built for 32 px but data.image_size=64"):
        trainer(tmp_path).fit(tiny_gan(size=32), dm)


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
