"""The NaN/Inf guard: non-finite steps are skipped and counted; K in a row stop the run with the
last good weights saved."""

from __future__ import annotations

import pytest
import torch
from conftest import quick_fit

from monet.diffusion import GaussianDiffusion
from monet.models import GAN, Diffusion
from monet.models.common import TrainingDiverged
from monet.nets import WGANCritic, WGANGenerator


class Poisoned(torch.nn.Module):
    """A tiny denoiser whose output turns NaN while `poison` > 0 (one step per call)."""

    image_size = 32

    def __init__(self, poison: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.poison = poison

    def forward(self, x, t):
        out = self.conv(x)
        if self.training and self.poison > 0:
            self.poison -= 1
            return out * float("nan")
        return out


def fit(model, kaggle_dir, tmp_path, max_steps):
    return quick_fit(model, kaggle_dir, tmp_path, max_steps=max_steps)


def diffusion(poison: int, limit: int = 10) -> Diffusion:
    model = Diffusion(Poisoned(poison), GaussianDiffusion(timesteps=10), ema=None)
    model.max_nonfinite_steps = limit
    return model


def test_nonfinite_steps_are_skipped_and_counted(kaggle_dir, tmp_path):
    model = diffusion(poison=2)
    before = model.denoiser.conv.weight.detach().clone()
    trainer = fit(model, kaggle_dir, tmp_path, max_steps=3)
    assert model.nonfinite_total == 2 and model.nonfinite_in_row == 0
    assert trainer.logged_metrics["train/nonfinite_steps"] == 2
    assert trainer.global_step == 3  # three good steps after the two skipped ones
    assert not torch.equal(before, model.denoiser.conv.weight)
    assert torch.isfinite(model.denoiser.conv.weight).all()


def test_k_nonfinite_steps_in_a_row_stop_with_the_last_good_weights(kaggle_dir, tmp_path):
    model = diffusion(poison=100, limit=3)
    before = model.denoiser.conv.weight.detach().clone()
    with pytest.raises(TrainingDiverged, match=r"NaN or inf for 3 steps in a row.*last-finite"):
        fit(model, kaggle_dir, tmp_path, max_steps=10)
    saved = torch.load(tmp_path / "checkpoints" / "last-finite.ckpt", weights_only=False)
    assert torch.equal(saved["state_dict"]["denoiser.conv.weight"], before)


class NaNCritic(WGANCritic):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_gan_guard_skips_critic_steps(kaggle_dir, tmp_path):
    model = GAN(
        WGANGenerator(latent_dim=8, features=4, image_size=32),
        NaNCritic(features=4, image_size=32),
        n_critic=1,
    )
    model.max_nonfinite_steps = 4
    with pytest.raises(TrainingDiverged):
        fit(model, kaggle_dir, tmp_path, max_steps=10)
    assert model.critic_steps == 0 and model.nonfinite_total == 4
