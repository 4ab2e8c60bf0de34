"""The WGAN-GP networks: shapes at every size, the report's architecture at 64 px, and sizes
they cannot work at refused at construction."""

from __future__ import annotations

import pytest
import torch

from monet.errors import ConfigError
from monet.nets import WGANCritic, WGANGenerator


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
