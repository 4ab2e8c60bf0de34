"""CycleGAN's networks against the reference implementation (pytorch-CycleGAN-and-pix2pix): the
ResNet generator and the 70x70 PatchGAN discriminator."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monet.errors import ConfigError
from monet.nets import PatchDiscriminator, ResnetGenerator

# --- ResnetGenerator ---------------------------------------------------------------------------


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


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
