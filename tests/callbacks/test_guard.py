"""NonFiniteGuard: a step with NaN/inf gradients leaves the weights and the optimizer state as
they were, on the device; the counts are read at log steps; K in a row stop the run with the
last finite weights saved."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support import quick_fit

from monet.callbacks import NonFiniteGuard, TrainingDiverged
from monet.diffusion import GaussianDiffusion
from monet.errors import ConfigError
from monet.models import GAN, Diffusion
from monet.models.ema import EMA
from monet.nets import WGANCritic, WGANGenerator


class Poisoned(torch.nn.Module):
    """A tiny denoiser whose training output is NaN on calls `start` .. `start + poison - 1`."""

    image_size = 32

    def __init__(self, poison: int, start: int = 0) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.poison, self.start, self.calls = poison, start, 0

    def forward(self, x, t):
        out = self.conv(x)
        if self.training:
            self.calls += 1
            if self.start < self.calls <= self.start + self.poison:
                return out * float("nan")
        return out


class Snapshots(L.Callback):
    """The weights and the optimizers' state after every training batch."""

    def __init__(self) -> None:
        self.taken: list[list[torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        state = [
            t.clone()
            for opt in trainer.optimizers
            for s in opt.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.ndim
        ]
        self.taken.append([p.detach().clone() for p in pl_module.parameters()] + state)


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def fit(model, kaggle_dir, tmp_path, max_steps, limit=10, *callbacks):
    guard = NonFiniteGuard(max_in_row=limit, check_every_n_steps=1)
    return quick_fit(
        model, kaggle_dir, tmp_path, max_steps=max_steps, callbacks=[guard, *callbacks]
    ), guard


def adam(fused: bool):
    return lambda params: torch.optim.Adam(params, lr=1e-3, fused=fused)


@pytest.mark.parametrize("fused", [False, True], ids=["made-fused", "fused"])
def test_nonfinite_steps_leave_weights_and_optimizer_state_as_they_were(
    fused, kaggle_dir, tmp_path
):
    net, process = Poisoned(poison=2, start=1), GaussianDiffusion(timesteps=10)
    model = Diffusion(net, process, ema=None, optimizer=adam(fused))
    snaps = Snapshots()
    trainer, guard = fit(model, kaggle_dir, tmp_path, 4, 10, snaps)
    first, *poisoned, last = snaps.taken
    assert all(same(first, s) for s in poisoned)  # steps 2 and 3: nothing moved, Adam included
    assert not same(first, last)  # step 4 trains from there
    assert all(torch.isfinite(t).all() for t in last)
    assert guard.total == 2 and trainer.logged_metrics["train/nonfinite_steps"] == 2


@pytest.mark.parametrize("fused", [False, True], ids=["made-fused", "fused"])
def test_a_nonfinite_first_step_creates_no_nan_optimizer_state(fused, kaggle_dir, tmp_path):
    net, process = Poisoned(poison=1), GaussianDiffusion(timesteps=10)
    model = Diffusion(net, process, ema=None, optimizer=adam(fused))
    before = model.denoiser.conv.weight.detach().clone()
    snaps = Snapshots()
    fit(model, kaggle_dir, tmp_path, 1, 10, snaps)
    assert torch.equal(model.denoiser.conv.weight, before)
    assert all(torch.isfinite(t).all() for t in snaps.taken[0])


def test_k_nonfinite_steps_in_a_row_stop_with_the_last_finite_weights(kaggle_dir, tmp_path):
    model = Diffusion(Poisoned(poison=100), GaussianDiffusion(timesteps=10), ema=None)
    before = model.denoiser.conv.weight.detach().clone()
    with pytest.raises(TrainingDiverged, match=r"NaN or inf for 3 optimizer steps.*last-finite"):
        fit(model, kaggle_dir, tmp_path, 10, 3)
    saved = torch.load(tmp_path / "checkpoints" / "last-finite.ckpt", weights_only=False)
    assert torch.equal(saved["state_dict"]["denoiser.conv.weight"], before)
    assert saved["callbacks"]["NonFiniteGuard"]["total"] == 3 or any(
        v.get("total") == 3 for v in saved["callbacks"].values()
    )


class NaNCritic(WGANCritic):
    def forward(self, x):
        return super().forward(x) * float("nan")


def test_gan_steps_and_its_ema_stay_finite(kaggle_dir, tmp_path):
    model = GAN(
        WGANGenerator(latent_dim=8, features=4, image_size=32),
        NaNCritic(features=4, image_size=32),
        n_critic=1,
        ema=EMA(half_life=100, buffers="average"),
    )
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingDiverged):  # two steps a batch: the critic's and the generator's
        fit(model, kaggle_dir, tmp_path, 10, 4)
    assert same(before, [p.detach() for p in model.parameters()])  # the EMA copy included


def test_an_optimizer_without_a_fused_kernel_is_refused_at_the_start(kaggle_dir, tmp_path):
    net, process = Poisoned(poison=0), GaussianDiffusion(timesteps=10)
    model = Diffusion(net, process, ema=None, optimizer=lambda p: torch.optim.RMSprop(p))
    with pytest.raises(ConfigError, match="RMSprop has none.*16-mixed"):
        fit(model, kaggle_dir, tmp_path, 2)
    assert not net.calls  # before the first step
