"""The EMA: a half-life in images, the library's cadence, BatchNorm statistics of its own."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from support import quick_fit

from monet.errors import ConfigError
from monet.models import GAN, CycleGAN, Diffusion
from monet.models.ema import EMA, AveragedNetwork, standing_stats_, update_ema_
from monet.nets import PatchDiscriminator, ResnetGenerator, SimpleUnet, WGANCritic, WGANGenerator


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
        standing_stats_(live, model.standing_noise, model.ema.settings.standing_batches)
    assert torch.equal(model.generate(z), live.eval()(z))


def test_standing_statistics_change_only_buffers_deterministically():
    """torch's update_bn does the pass; what it lacks is kept around it: update_bn gives every
    submodule the top module's mode afterwards, and a submodule in its own mode gets it back."""
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
    assert model.generator_steps == model.ema.steps == 3  # 6 optimizer steps, G and D
    assert model.ema.images == 12  # batch 4, one device
    net = model.sampling_net
    stats = net.net[1].running_mean.clone()
    assert model.sampling_net is net and torch.equal(stats, net.net[1].running_mean)  # no side
    z = noise(torch.Generator().manual_seed(3))  # effects: reading it recomputes nothing
    images = model.generate(z)  # sampling recomputes them, explicitly, for these weights
    want = copy.deepcopy(net)
    standing_stats_(want, model.standing_noise, 2)
    for a, b in zip(want.buffers(), net.buffers()):
        assert torch.equal(a, b)
    assert torch.equal(images, model.generate(z))  # current: not recomputed again
    stats = net.net[1].running_mean.clone()
    model.update_ema(4)  # new weights: the next sampling recomputes
    assert torch.equal(stats, net.net[1].running_mean)
    model.generate(z)
    assert not torch.equal(stats, net.net[1].running_mean)


@pytest.mark.parametrize("family", ["diffusion", "cyclegan"])
def test_standing_statistics_are_refused_in_one_place_for_families_without_noise(family):
    settings = EMA(buffers="standing")
    with pytest.raises(ConfigError, match="only a noise-to-image generator takes"):
        if family == "diffusion":
            Diffusion(SimpleUnet(image_size=32, dim=8, dim_mults=(1, 2)), ema=settings)
        else:
            CycleGAN(
                ResnetGenerator(4, 1, image_size=32),
                PatchDiscriminator(4, image_size=32),
                ema=settings,
            )


def test_the_clock_counts_images_over_devices_and_accumulation():
    ema = AveragedNetwork(generator(), EMA(half_life=1000, rampup=0.5))
    live = generator()
    ema.update(live, 64)  # the ramp-up half-life is 0.5 x the images seen, this step's too
    assert (ema.steps, ema.images) == (1, 64)
    want = copy.deepcopy(ema.net)
    update_ema_(want, live, EMA(half_life=1000, rampup=0.5).beta(2, 32, 96))
    ema.update(live, 32)  # a smaller batch: images, not steps, set the ramp-up
    assert (ema.steps, ema.images) == (2, 96)
    assert all(torch.equal(a, b) for a, b in zip(want.parameters(), ema.net.parameters()))


def test_channels_last_reaches_the_ema_copy():
    model = GAN(generator(), WGANCritic(features=4, image_size=32), ema=EMA(), channels_last=True)
    model.configure_model()
    convs = [m.weight for m in model.ema.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def old_checkpoint(model, averaged_as: str, steps: int) -> dict:
    """A checkpoint as written before AveragedNetwork: the copy under `averaged_as` and its
    clock in the `ema_updates` counter."""
    state = {
        (averaged_as + k[len("ema.net.") :] if k.startswith("ema.net.") else k): v.clone()
        for k, v in model.state_dict().items()
        if k != "ema._extra_state"
    }
    return {"state_dict": state, "counters": {"ema_updates": steps}}


def test_a_gan_checkpoint_from_before_loads_with_its_ema_and_clock():
    model = GAN(generator(), WGANCritic(features=4, image_size=32), ema=EMA())
    with torch.no_grad():
        for p in model.ema.parameters():
            p.add_(1.0)  # the copy differs from the generator
    ckpt = old_checkpoint(model, "generator_ema.", 7)
    again = GAN(generator(), WGANCritic(features=4, image_size=32), ema=EMA())
    again.on_load_checkpoint(ckpt)  # Lightning calls it before load_state_dict
    again.load_state_dict(ckpt["state_dict"])  # strict: every key found
    assert again.generator_steps == 7 and again.ema.steps == 7 and again.ema.images is None
    for a, b in zip(again.ema.parameters(), model.ema.parameters()):
        assert torch.equal(a, b)
    again.update_ema(16)  # the clock goes on as such runs counted: steps x the batch
    assert (again.ema.steps, again.ema.images) == (8, 8 * 16)


def test_a_diffusion_checkpoint_from_before_loads_with_its_ema_and_clock():
    make = lambda: Diffusion(SimpleUnet(image_size=32, dim=8, dim_mults=(1, 2)))  # noqa: E731
    model = make()
    ckpt = old_checkpoint(model, "ema.", 5)
    again = make()
    again.on_load_checkpoint(ckpt)
    again.load_state_dict(ckpt["state_dict"])
    assert again.ema.steps == 5 and not hasattr(again, "generator_steps")


def test_kept_lengths_each_average_as_their_own_ema_and_use_picks_one():
    torch.manual_seed(0)
    live = torch.nn.Linear(4, 4)
    lengths = EMA(half_life=100, rampup=None, lengths=[40, 400])
    kept = AveragedNetwork(live, lengths)
    alone = {h: AveragedNetwork(live, EMA(half_life=h, rampup=None)) for h in (100, 40, 400)}
    for _ in range(5):
        with torch.no_grad():
            live.weight.add_(torch.randn(4, 4))
        kept.update(live, 8)
        for a in alone.values():
            a.update(live, 8)
    for half_life, net in kept.copies():
        assert torch.equal(net.weight, alone[half_life].net.weight)
    assert kept.selected is kept.net  # `half_life` samples by default
    assert not torch.equal(kept.kept["40"].weight, kept.kept["400"].weight)
    kept.settings = EMA(half_life=100, rampup=None, lengths=[40, 400], use=400)
    assert kept.selected is kept.kept["400"]
    # the copies travel in the state dict and come back
    restored = AveragedNetwork(live, lengths)
    restored.load_state_dict(kept.state_dict())
    assert torch.equal(restored.kept["40"].weight, kept.kept["40"].weight)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"half_life": 100, "lengths": [50], "use": 70}, r"ema.use=70 is not a kept.*100, 50"),
        ({"half_life": None, "decay": 0.9, "lengths": [50]}, "give half_life, not decay"),
        ({"half_life": 100, "lengths": [-5]}, r"lengths=\[-5\] must be > 0"),
    ],
)
def test_bad_lengths_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        EMA(**kw)


def test_a_finished_diffusion_run_samples_with_another_kept_length(kaggle_dir, tmp_path):
    from monet.diffusion import GaussianDiffusion
    from monet.nets import LibUnet

    def model(use=None):
        net = LibUnet(image_size=32, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
        ema = EMA(half_life=50, rampup=None, lengths=[10], use=use)
        return Diffusion(net, GaussianDiffusion(timesteps=20), "dpmpp_2m", 3, ema=ema)

    trained = model()
    quick_fit(trained, kaggle_dir, tmp_path, max_steps=3)
    other = model(use=10)
    other.load_state_dict(trained.state_dict())
    noise = trained.sample_noise(2, torch.Generator().manual_seed(0))
    assert other.sampling_net is other.ema.kept["10"]
    assert not torch.allclose(trained.generate(noise), other.generate(noise))


def test_a_checkpoint_without_todays_kept_lengths_loads_them_from_its_average():
    from monet.diffusion import GaussianDiffusion
    from monet.nets import LibUnet

    def model(lengths):
        net = LibUnet(image_size=32, dim=8, dim_mults=(1, 2), attn_heads=2, attn_dim_head=8)
        ema = EMA(half_life=50, rampup=None, lengths=lengths)
        return Diffusion(net, GaussianDiffusion(timesteps=20), "dpmpp_2m", 3, ema=ema)

    old = model([])
    with torch.no_grad():
        for p in old.ema.net.parameters():
            p.add_(1.0)
    checkpoint = {"state_dict": old.state_dict()}
    new = model([10, 200])
    new.on_load_checkpoint(checkpoint)
    new.load_state_dict(checkpoint["state_dict"])  # strict: every kept copy is there
    for _, net in new.ema.copies():
        assert all(torch.equal(a, b) for a, b in zip(net.parameters(), old.ema.net.parameters()))
