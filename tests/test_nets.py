"""GAN networks: shapes at every size; every network's image size checked by one rule, one line."""

from __future__ import annotations

import pytest
import torch

from monet.data import MonetDataModule
from monet.errors import ConfigError
from monet.nets import (
    FastGANDiscriminator,
    FastGANGenerator,
    LibUnet,
    ResnetGenerator,
    SimpleUnet,
    WGANCritic,
    WGANGenerator,
)
from monet.nets.common import check_image_size
from monet.nets.fastgan import SkipExcitation


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_wgan_shapes(size):
    g = WGANGenerator(latent_dim=16, features=8, image_size=size)
    c = WGANCritic(features=8, image_size=size)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert c(x).shape == (2,)


def test_report_architecture_at_64px():
    g, c = WGANGenerator(), WGANCritic()
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [1024, 512, 256, 128, 3]
    assert [m.out_channels for m in c.modules() if isinstance(m, torch.nn.Conv2d)] == [
        64,
        128,
        256,
        512,
        1,
    ]
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in c.modules())
    assert all(m.affine for m in c.modules() if isinstance(m, torch.nn.InstanceNorm2d))


@pytest.mark.parametrize("size", [16, 48, 100, 512])
def test_bad_size_fails_at_construction(size):
    with pytest.raises(ConfigError, match=rf"image_size={size}.*32, 64, 128, 256"):
        WGANGenerator(image_size=size)
    with pytest.raises(ConfigError, match=rf"WGANCritic cannot work at image_size={size}"):
        WGANCritic(image_size=size)


@pytest.mark.parametrize("size, gates", [(32, 1), (64, 2), (128, 3), (256, 4)])
def test_fastgan_shapes_and_skip_excitation(size, gates):
    g = FastGANGenerator(latent_dim=16, features=8, image_size=size)
    d = FastGANDiscriminator(features=4, image_size=size)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1
    assert d(x).shape == (2,)
    assert sum(isinstance(m, SkipExcitation) for m in g.modules()) == gates
    plain = FastGANGenerator(latent_dim=16, features=8, image_size=size, skip_excitation=False)
    assert not any(isinstance(m, SkipExcitation) for m in plain.modules())


def test_fastgan_upsamples_without_strided_transposed_convs():
    """Transposed convs with stride 2 overlap unevenly and print a periodic dot grid (Odena et
    al. 2016); the generator's only transposed conv maps the 1x1 latent to 4x4."""
    g = FastGANGenerator(image_size=64)
    transposed = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == 1 and transposed[0].stride == (1, 1)


def test_skip_excitation_gates_channels_from_the_small_map():
    gate = SkipExcitation(c_small=4, c_large=6)
    small, large = torch.randn(2, 4, 8, 8), torch.ones(2, 6, 32, 32)
    out = gate(small, large)
    per_channel = out[:, :, :1, :1]
    assert torch.equal(out, per_channel.expand_as(out))  # one gate per channel
    assert ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: WGANGenerator(image_size=48), r"WGANGenerator .* image_size=48: use one of 32"),
        (
            lambda: SimpleUnet(image_size=40),
            r"SimpleUnet .* image_size=40: it halves the image 4 times, so use a multiple of 16 ",
        ),
        (lambda: LibUnet(image_size=12.0), r"LibUnet .* image_size=12.0: .* multiple of 8 "),
        (lambda: ResnetGenerator(image_size=30), r"image_size=30: .* multiple of 4 that is at le"),
        (lambda: MonetDataModule(image_size=4), r"data.image_size=4: use a side that is at le"),
    ],
)
def test_one_image_size_rule_names_the_key_and_the_fix(build, message):
    """Every network and the data module check the side with `check_image_size`: one line."""
    with pytest.raises(ConfigError, match=message) as err:
        build()
    assert "\n" not in str(err.value) and str(err.value).endswith(".")
    assert ("and the same data.image_size" in str(err.value)) != ("data.image" in message)


def test_check_image_size_accepts_what_it_names():
    check_image_size("x", 48, multiple_of=16)
    check_image_size("x", 36, multiple_of=4, at_least=32)
    check_image_size("x", 64, sizes=(32, 64))
    with pytest.raises(ConfigError, match="such as 1024"):
        check_image_size("x", 512, multiple_of=1024)
    with pytest.raises(ConfigError):
        check_image_size("x", True, multiple_of=1)
