"""CycleGAN's parts: the reference networks, the LSGAN/cycle/identity losses and the image pool."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monet.errors import ConfigError
from monet.losses import critic_loss, cycle_loss, generator_loss, identity_loss
from monet.models.pool import ImagePool
from monet.nets import PatchDiscriminator, ResnetGenerator


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --- ResnetGenerator ---------------------------------------------------------------------------


@pytest.mark.parametrize("upsample", ["transposed", "nearest"])
@pytest.mark.parametrize("size", [32, 64])
def test_generator_keeps_the_shape_and_range(size, upsample):
    g = ResnetGenerator(features=8, blocks=2, image_size=size, upsample=upsample)
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1


def test_generator_is_fully_convolutional():
    g = ResnetGenerator(features=8, blocks=2, image_size=32)
    assert g.image_size == 32
    assert g(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert g(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 32, 48)  # not square either


def test_generator_rejects_sizes_that_are_not_multiples_of_4():
    g = ResnetGenerator(features=8, blocks=2, image_size=32)
    with pytest.raises(ValueError, match="30x30.*multiples of 4"):
        g(torch.zeros(1, 3, 30, 30))


@pytest.mark.parametrize("size", [16, 30, 66])
def test_generator_bad_image_size_fails_at_construction(size):
    with pytest.raises(ConfigError, match=rf"image_size={size}.*multiple of 4"):
        ResnetGenerator(image_size=size)


def test_generator_bad_upsample_fails_at_construction():
    with pytest.raises(ConfigError, match="upsample='bilinear'"):
        ResnetGenerator(upsample="bilinear")


@pytest.mark.parametrize("blocks, count", [(9, 11_378_179), (6, 7_837_699)])
def test_generator_matches_the_reference_parameter_count(blocks, count):
    # pytorch-CycleGAN-and-pix2pix resnet_9blocks / resnet_6blocks with InstanceNorm
    g = ResnetGenerator(blocks=blocks)
    assert n_params(g) == count
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 5 + 2 * blocks
    assert not any(m.affine or m.track_running_stats for m in norms)
    ups = [m.out_channels for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert ups == [128, 64]


def test_generator_nearest_has_no_transposed_convs():
    g = ResnetGenerator(features=8, blocks=2, upsample="nearest")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())
    assert sum(isinstance(m, nn.Upsample) for m in g.modules()) == 2


def test_generator_init_is_normal_002():
    g = ResnetGenerator()
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert w.mean().abs() < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert all((m.bias == 0).all() for m in g.modules() if isinstance(m, nn.Conv2d))


# --- PatchDiscriminator ------------------------------------------------------------------------


@pytest.mark.parametrize("size, out", [(256, 30), (128, 14), (64, 6)])
def test_patch_discriminator_output_size(size, out):
    d = PatchDiscriminator(features=8, image_size=size)
    assert d(torch.zeros(2, 3, size, size)).shape == (2, 1, out, out)


def test_patch_discriminator_matches_the_reference():
    d = PatchDiscriminator()
    assert n_params(d) == 2_764_737
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 512, 1]
    assert [m.stride[0] for m in convs] == [2, 2, 2, 1, 1]
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())


def test_patch_discriminator_receptive_field_is_70():
    d = PatchDiscriminator(features=8).double()
    # InstanceNorm's statistics span the whole map and would spread the gradient everywhere:
    # without them the gradient shows the convolutions' own window.
    for name, m in list(d.net.named_children()):
        if isinstance(m, nn.InstanceNorm2d):
            d.net[int(name)] = nn.Identity()
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64, requires_grad=True)
    scores = d(x)
    assert scores.shape == (1, 1, 14, 14)
    scores[0, 0, 7, 7].backward()
    hit = x.grad[0].abs().sum(0) > 0
    rows = hit.any(1).nonzero().flatten()
    cols = hit.any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (33, 102)  # 8 * 7 - 23 ... + 69
    assert (cols.min().item(), cols.max().item()) == (33, 102)
    assert hit[33:103, 33:103].float().mean() > 0.99  # the whole window, not a sparse subset


# --- losses ------------------------------------------------------------------------------------


def test_lsgan_values():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([1.0, -3.0])
    # 0.5 * (mean((real - 1)^2) + mean(fake^2)) = 0.5 * (1 + 5)
    assert critic_loss("lsgan", real, fake).item() == pytest.approx(3.0)
    # mean((fake - 1)^2) = (0 + 16) / 2
    assert generator_loss("lsgan", fake).item() == pytest.approx(8.0)
    patches = torch.full((2, 1, 3, 3), 0.5)
    assert critic_loss("lsgan", patches, patches).item() == pytest.approx(0.25)
    assert generator_loss("lsgan", patches).item() == pytest.approx(0.25)


def test_unknown_loss_lists_lsgan():
    with pytest.raises(ValueError, match="hinge or lsgan"):
        generator_loss("wgan", torch.zeros(2))


def test_cycle_and_identity_are_mean_l1():
    real = torch.zeros(2, 3, 4, 4)
    assert cycle_loss(real, torch.full_like(real, 0.5)).item() == pytest.approx(0.5)
    assert identity_loss(real, torch.full_like(real, -0.25)).item() == pytest.approx(0.25)
    a, b = torch.tensor([1.0, -1.0, 3.0, 0.0]), torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert cycle_loss(a, b).item() == pytest.approx((1 + 2 + 2 + 0) / 4)
    assert identity_loss(b, a).item() == pytest.approx(5 / 4)


# --- ImagePool ---------------------------------------------------------------------------------


def ids(n: int, start: int = 0) -> torch.Tensor:
    """n images (n, 1, 2, 2), image k filled with the value start + k: its identity."""
    return torch.arange(start, start + n, dtype=torch.float32)[:, None, None, None].expand(
        n, 1, 2, 2
    )


def labels(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0]]


def pooled(pool: ImagePool) -> list[int]:
    return sorted(labels(pool.state_dict()["images"]))


def test_pool_of_size_0_returns_its_input():
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = ImagePool(0).query(x)
    assert torch.equal(out, x) and not out.requires_grad
    assert ImagePool(0).state_dict()["count"] == 0


def test_pool_returns_its_inputs_while_filling():
    pool, g = ImagePool(5), torch.Generator().manual_seed(0)
    assert labels(pool.query(ids(3), g)) == [0, 1, 2]
    assert labels(pool.query(ids(2, 3), g)) == [3, 4]
    assert pooled(pool) == [0, 1, 2, 3, 4]
    assert pool.count == 5


def test_pool_swaps_half_the_time_once_full():
    pool, g = ImagePool(4), torch.Generator().manual_seed(1)
    pool.query(ids(4), g)
    new = old = 0
    for k in range(4, 204):
        before = pooled(pool)
        (r,) = labels(pool.query(ids(1, k), g))
        if r == k:
            new += 1
            assert pooled(pool) == before
        else:
            old += 1
            assert r in before
            assert pooled(pool) == sorted([*(v for v in before if v != r), k])
    assert 70 < new < 130 and 70 < old < 130  # 200 fair coins: both outcomes, about half


def test_pool_batch_answers_are_new_or_stored():
    pool, g = ImagePool(6), torch.Generator().manual_seed(2)
    pool.query(ids(6), g)
    seen = set(range(6))
    for step in range(10):
        batch = ids(4, 6 + 4 * step)
        out = labels(pool.query(batch, g))
        for r, k in zip(out, labels(batch)):
            assert r == k or r in seen  # an earlier image of the same batch may come back
            seen.add(k)
        assert len(set(out)) == len(out)  # an image is never handed out twice in one batch


def test_pool_is_deterministic_given_the_seed():
    def run(seed: int) -> list[list[int]]:
        pool, g = ImagePool(3), torch.Generator().manual_seed(seed)
        return [labels(pool.query(ids(2, 2 * k), g)) for k in range(20)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_pool_state_dict_round_trip_resumes_exactly():
    pool, g = ImagePool(5), torch.Generator().manual_seed(3)
    for k in range(6):
        pool.query(ids(2, 2 * k), g)
    state, rng = pool.state_dict(), g.get_state()
    assert state["count"] == 5 and state["images"].shape == (5, 1, 2, 2)
    resumed, g2 = ImagePool(5), torch.Generator()
    resumed.load_state_dict(state)
    g2.set_state(rng)
    for k in range(6, 20):
        assert torch.equal(pool.query(ids(2, 2 * k), g), resumed.query(ids(2, 2 * k), g2))
    assert pooled(pool) == pooled(resumed)


def test_pool_state_dict_is_a_copy_and_partial_pools_round_trip():
    pool = ImagePool(5)
    pool.query(ids(2))
    state = pool.state_dict()
    pool.query(ids(3, 2))
    assert labels(state["images"]) == [0, 1]
    resumed = ImagePool(5)
    resumed.load_state_dict(state)
    assert labels(resumed.query(ids(3, 10))) == [10, 11, 12]  # still filling: 2 + 3 = 5
    assert pooled(resumed) == [0, 1, 10, 11, 12]
    with pytest.raises(ConfigError, match="size=1.*size >= 2"):
        ImagePool(1).load_state_dict(state)


def test_pool_answers_are_detached_copies():
    pool = ImagePool(2)
    x = torch.randn(3, 3, 4, 4, requires_grad=True)
    out = pool.query(x * 1)
    assert not out.requires_grad
    assert torch.equal(out[:2], x[:2].detach())
    y = torch.randn(2, 3, 4, 4)
    pool = ImagePool(2)
    out = pool.query(y)
    y.zero_()
    assert out.abs().sum() > 0  # neither the answer nor the stored images alias the input
    assert pool.state_dict()["images"].abs().sum() > 0


def test_pool_starts_over_when_the_image_shape_changes():
    pool = ImagePool(2)
    pool.query(ids(2))
    out = pool.query(torch.ones(1, 3, 4, 4))
    assert torch.equal(out, torch.ones(1, 3, 4, 4))
    assert pool.count == 1 and pool.state_dict()["images"].shape == (1, 3, 4, 4)


def test_pool_bad_size():
    with pytest.raises(ConfigError, match="size=-1"):
        ImagePool(-1)
