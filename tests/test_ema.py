"""The EMA: a half-life in images, the library's cadence, BatchNorm statistics of its own."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import quick_fit

from monet.errors import ConfigError
from monet.models import GAN
from monet.models.ema import EMA, standing_stats_, update_ema_
from monet.nets import WGANCritic, WGANGenerator


def generator() -> WGANGenerator:
    return WGANGenerator(latent_dim=8, features=4, image_size=32)


def noise(gen: torch.Generator) -> torch.Tensor:
    return torch.randn(16, 8, generator=gen)


def shares(ema: EMA, batch: int, steps: int) -> float:
    """The share of the average still held by the weights from before `steps` steps."""
    return math.prod(ema.beta(s, batch) for s in range(1, steps + 1))


def test_half_life_is_in_images_whatever_the_batch_size():
    ema = EMA(half_life=1024, rampup=None)
    assert shares(ema, 16, 64) == pytest.approx(0.5)  # 1,024 images at 16 a step
    assert shares(ema, 64, 16) == pytest.approx(0.5)  # 1,024 images at 64 a step
    assert shares(ema, 16, 128) == pytest.approx(0.25)


def test_rampup_shortens_the_half_life_early():
    ema = EMA(half_life=10_000, rampup=0.05)
    # after 100 steps of 16 images the half-life is 0.05 x 1,600 = 80 images: 5 steps
    assert ema.beta(100, 16) == pytest.approx(0.5 ** (16 / 80))
    assert ema.beta(100_000, 16) == pytest.approx(0.5 ** (16 / 10_000))  # the full one later


def test_the_librarys_decay_cadence_and_start():
    ema = EMA(half_life=None, decay=0.995, every=10, start=100)
    assert all(ema.beta(s, 32) == 0.0 for s in range(1, 101))  # copies until `start`
    assert ema.beta(105, 32) is None and ema.beta(109, 32) is None  # only every 10th step
    assert ema.beta(110, 32) == pytest.approx(1 - 2 ** (-2 / 3))  # ema-pytorch's warm-up
    assert ema.beta(100 + 10 * 100_000, 32) == 0.995


@pytest.mark.parametrize(
    "kw",
    [
        {"half_life": None},
        {"half_life": 100, "decay": 0.9},
        {"half_life": -1},
        {"half_life": None, "decay": 1.0},
        {"every": 0},
        {"buffers": "median"},
    ],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(ConfigError, match="model ema"):
        EMA(**kw)


def test_average_buffers_follow_the_live_statistics_like_the_weights():
    live = generator()
    ema = copy.deepcopy(live)
    live(noise(torch.Generator().manual_seed(1)))  # train mode: the live statistics move
    bn_live = live.net[1]
    bn_ema = ema.net[1]
    before = bn_ema.running_mean.clone()
    update_ema_(ema, live, 0.75, "average")
    assert torch.allclose(bn_ema.running_mean, 0.75 * before + 0.25 * bn_live.running_mean)
    assert bn_ema.num_batches_tracked == bn_live.num_batches_tracked
    update_ema_(ema, live, 0.75, "standing")  # standing: buffers untouched by updates
    assert not torch.allclose(bn_ema.running_mean, bn_live.running_mean)


@pytest.mark.parametrize("buffers", ["average", "standing", "copy"])
def test_the_ema_of_a_network_equal_to_the_live_one_samples_identically(buffers):
    model = GAN(generator(), WGANCritic(features=4, image_size=32), ema=EMA(buffers=buffers))
    for _ in range(5):  # the live network does not move: the average stays equal to it
        model.update_ema(16)
    z = noise(torch.Generator().manual_seed(2))
    live = model.generator
    if buffers == "standing":  # the same recomputation on the live weights
        live = copy.deepcopy(live)
        standing_stats_(live, model.standing_noise, model.ema.standing_batches)
    assert torch.equal(model.generate(z), live.eval()(z))


def test_standing_statistics_change_only_buffers_deterministically():
    net = generator()
    net.net[2].train(False)  # a submodule in its own mode gets it back
    params = [p.clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    standing_stats_(net, noise, batches=4)
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(buffers, net.buffers()))
    assert net.training and not net.net[2].training
    assert net.net[1].momentum == 0.1
    first = [b.clone() for b in net.buffers()]
    standing_stats_(net, noise, batches=4)
    assert all(torch.equal(a, b) for a, b in zip(first, net.buffers()))


def test_standing_statistics_follow_the_ema_weights_through_a_fit(kaggle_dir, tmp_path):
    model = GAN(
        generator(),
        WGANCritic(features=4, image_size=32),
        n_critic=1,
        ema=EMA(half_life=64, rampup=None, buffers="standing", standing_batches=2),
    )
    quick_fit(model, kaggle_dir, tmp_path, max_steps=6)
    assert model.ema_updates == 3  # a generator step per critic step: 6 optimizer steps
    net = model.sampling_net
    want = copy.deepcopy(net)
    standing_stats_(want, model.standing_noise, 2)
    for a, b in zip(want.buffers(), net.buffers()):
        assert torch.equal(a, b)
    stats = net.net[1].running_mean.clone()
    model.update_ema(4)  # new weights: the next sampling recomputes
    assert model.sampling_net is net and not torch.equal(stats, net.net[1].running_mean)
