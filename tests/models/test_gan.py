"""The GAN LightningModule under a real Trainer: the n_critic cycle, logging, size checks,
DiffAugment in both steps, R1, a learning rate for each network, LR schedules on the
generator's clock, the EMA generator, and the collapse signal (diversity)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from support import quick_fit, tiny_gan, trainer

from monet.data import MonetDataModule
from monet.errors import ConfigError
from monet.metrics import diversity
from monet.models import GAN
from monet.models import diffaugment as da
from monet.models.ema import EMA
from monet.nets import WGANCritic


class StepOrder(L.Callback):
    def __init__(self) -> None:
        self.order: list[str] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        gen = optimizer.param_groups[0]["params"][0] is next(pl_module.generator.parameters())
        self.order.append("G" if gen else "C")


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


class Recorder:
    """Wraps the real diff_augment and records what it was applied to."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[tuple[str, ...], bool]] = []
        real = da.diff_augment

        def spy(x, policy, generator=None):
            self.calls.append((policy, x.requires_grad))
            return real(x, policy, generator)

        monkeypatch.setattr("monet.models.adversarial.diff_augment", spy)


def fit(model, kaggle_dir, tmp_path, **kw):
    return quick_fit(model, kaggle_dir, tmp_path, **kw)


def test_gan_augments_real_and_fake_in_both_steps(kaggle_dir, tmp_path, monkeypatch):
    rec = Recorder(monkeypatch)
    fit(tiny_gan(n_critic=1, diffaugment="color,cutout"), kaggle_dir, tmp_path)
    policies = {p for p, _ in rec.calls}
    assert policies == {("color", "cutout")}
    # per critic+generator cycle: real and fake (detached) for D, fake with graph for G
    assert [g for _, g in rec.calls[:3]] == [False, False, True]
    assert len(rec.calls) == 3  # max_steps=2: one critic and one generator step


def test_r1_is_logged_and_trains(kaggle_dir, tmp_path):
    t = fit(tiny_gan(loss="bce", gp_weight=0.0, r1_gamma=10.0, n_critic=1), kaggle_dir, tmp_path)
    assert (
        "train/r1_penalty" in t.logged_metrics and "train/gradient_penalty" not in t.logged_metrics
    )


def test_ttur_gives_each_network_its_rate():
    model = tiny_gan(
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-4, betas=(0.5, 0.999)),
        critic_optimizer=lambda p: torch.optim.Adam(p, lr=4e-4, betas=(0.5, 0.999)),
    )
    opt_g, opt_c = model.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == 1e-4 and opt_c.param_groups[0]["lr"] == 4e-4
    assert opt_c.param_groups[0]["betas"] == (0.5, 0.999)
    same = tiny_gan(optimizer=lambda p: torch.optim.SGD(p, lr=0.1)).configure_optimizers()
    assert all(isinstance(opt, torch.optim.SGD) for opt in same)  # the critic's by default


def test_lr_schedules_from_the_yaml_step_with_the_generator(kaggle_dir, tmp_path):
    model = tiny_gan(
        n_critic=2,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5),
    )
    fit(model, kaggle_dir, tmp_path, max_steps=6)  # 4 critic and 2 generator steps
    assert model.generator_steps == 2
    for opt in model.trainer.optimizers:  # both networks follow the generator's clock
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.25)


def test_ema_generator_differs_from_live_and_samples(kaggle_dir, tmp_path):
    model = tiny_gan(n_critic=1, ema=EMA(half_life=None, decay=0.5))
    fit(model, kaggle_dir, tmp_path, max_steps=6)
    live = torch.cat([p.flatten() for p in model.generator.parameters()])
    ema = torch.cat([p.flatten() for p in model.ema.parameters()])
    assert not torch.equal(live, ema) and model.ema.steps == model.generator_steps == 3
    assert model.sampling_net is model.ema.net
    z = model.sample_noise(2)
    model.ema.eval()
    assert torch.allclose(model.generate(z), model.ema.net(z))
    assert any(k.startswith("ema.net.") for k in model.state_dict())


class Constant(torch.nn.Module):
    """A collapsed generator: the same image whatever the noise."""

    latent_dim, image_size = 8, 32

    def __init__(self) -> None:
        super().__init__()
        self.image = torch.nn.Parameter(torch.rand(1, 3, 32, 32) * 2 - 1)

    def forward(self, z):
        return self.image.expand(len(z), -1, -1, -1) + 0 * z.sum()


class Spread(Constant):
    """A generator whose images vary with the noise as much as paintings do."""

    def forward(self, z):
        return torch.tanh(self.image + z[:, :3, None, None] * 2)


def test_diversity_signal_drops_on_a_collapsed_generator(kaggle_dir, tmp_path):
    images = torch.rand(8, 3, 32, 32)
    assert diversity(images) > 0.5 and diversity(images[:1].expand(8, -1, -1, -1)) == 0
    logged = {}
    for name, generator in (("collapsed", Constant()), ("healthy", Spread())):
        model = GAN(generator, WGANCritic(features=4, image_size=32), n_critic=1)
        one_epoch = {"max_steps": -1, "max_epochs": 1, "limit_train_batches": 1}
        logged[name] = fit(model, kaggle_dir, tmp_path, limit_val_batches=1, **one_epoch)
        logged[name] = logged[name].logged_metrics
    assert (
        logged["collapsed"]["diversity/fake"] == 0 and logged["collapsed"]["diversity/ratio"] == 0
    )
    assert logged["healthy"]["diversity/ratio"] > 0.3 and logged["healthy"]["diversity/real"] > 0
