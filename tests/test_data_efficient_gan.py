"""DCGAN and the data-efficient GAN tools: DiffAugment, R1, spectral norm, EMA, diversity."""

from __future__ import annotations

import pytest
import torch
from support import quick_fit
from test_losses import Linear, Quadratic

from monet.errors import ConfigError
from monet.losses import r1_penalty
from monet.metrics import diversity
from monet.models import GAN
from monet.models import diffaugment as da
from monet.models.ema import EMA
from monet.nets import DCGANDiscriminator, DCGANGenerator, WGANCritic, WGANGenerator
from monet.nets.common import spectral_norm_all


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_dcgan_shapes(size):
    g = DCGANGenerator(latent_dim=16, image_size=size, widths=(32, 16, 8, 8, 8))
    d = DCGANDiscriminator(image_size=size, widths=(4, 8, 8, 8))
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert d(x).shape == (2,)


def test_dcgan_is_the_reports_model_at_256px():
    g, d = DCGANGenerator(), DCGANDiscriminator()
    assert g.project.out_features == 16 * 16 * 512
    ups = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in ups] == [256, 128, 64, 32]
    assert all(m.kernel_size == (6, 6) and m.stride == (2, 2) for m in ups)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [32, 64, 128, 256]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())
    with pytest.raises(ConfigError, match="DCGANGenerator cannot work at image_size=16"):
        DCGANGenerator(image_size=16)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_is_differentiable(policy):
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    ops = da.parse_policy(policy)

    def f(x):  # the same random draw on every call, so gradcheck sees one function
        return da.diff_augment(x, ops, torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)
    f(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_diffaugment_ops_do_what_they_say():
    ones = torch.ones(16, 3, 16, 16)
    cut = da.cutout(ones, torch.Generator().manual_seed(0))
    holes = (cut == 0).flatten(1).sum(1)  # an 8x8 hole per image, clipped at the border
    assert (holes > 0).all() and (holes <= 3 * 8 * 8).all() and (holes == 3 * 8 * 8).any()
    for hole in cut[:, 0] == 0:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert hole[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    moved = da.translation(ones, torch.Generator().manual_seed(0))
    zeros_per_image = (moved == 0).flatten(1).sum(1)
    assert (zeros_per_image > 0).any() and (zeros_per_image <= 3 * (16 * 16 - 14 * 14)).all()
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(da.diff_augment(x, ()), x)
    with pytest.raises(ValueError, match="unknown \\['blur'\\]"):
        da.parse_policy("color,blur")


def test_diffaugment_has_the_same_structure_for_real_and_fake():
    real, fake = torch.rand(4, 3, 16, 16) + 1, torch.rand(4, 3, 16, 16) + 1
    ops = da.parse_policy("translation,cutout")
    a = da.diff_augment(real, ops, torch.Generator().manual_seed(3))
    b = da.diff_augment(fake, ops, torch.Generator().manual_seed(3))
    assert torch.equal(a == 0, b == 0)  # same shifts and same holes


class Recorder:
    """Wraps the real diff_augment and records what it was applied to."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[tuple[str, ...], bool]] = []
        real = da.diff_augment

        def spy(x, policy, generator=None):
            self.calls.append((policy, x.requires_grad))
            return real(x, policy, generator)

        monkeypatch.setattr("monet.models.adversarial.diff_augment", spy)


def tiny_gan(**kw) -> GAN:
    return GAN(
        WGANGenerator(latent_dim=8, features=4, image_size=32),
        WGANCritic(features=4, image_size=32),
        **kw,
    )


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


def test_r1_penalty_closed_forms():
    w = torch.full((1, 3, 4, 4), 0.25)
    real = torch.randn(5, 3, 4, 4)
    assert r1_penalty(Linear(w), real).item() == pytest.approx((w**2).sum().item(), rel=1e-6)
    expected = real.flatten(1).pow(2).sum(1).mean()
    assert r1_penalty(Quadratic(), real).item() == pytest.approx(expected.item(), rel=1e-5)


def test_r1_is_logged_and_trains(kaggle_dir, tmp_path):
    t = fit(tiny_gan(loss="bce", gp_weight=0.0, r1_gamma=10.0, n_critic=1), kaggle_dir, tmp_path)
    assert (
        "train/r1_penalty" in t.logged_metrics and "train/gradient_penalty" not in t.logged_metrics
    )


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 16)
    layer.weight.data *= 10
    wrapped = spectral_norm_all(torch.nn.Sequential(layer))[0]
    for _ in range(30):  # power iterations run in training-mode forward passes
        wrapped(torch.randn(2, 32))
    sigma = torch.linalg.matrix_norm(wrapped.weight.detach(), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.02)
    assert torch.linalg.matrix_norm(wrapped.parametrizations.weight.original, ord=2) > 5
    critic = tiny_gan(spectral_norm=True).critic
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)


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
    assert torch.allclose(model.generate(z), model.ema(z))
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
