"""FastGAN's networks: shapes at every size, skip-layer excitation, and upsampling without
strided transposed convolutions."""

from __future__ import annotations

import pytest
import torch

from monet.nets import FastGANDiscriminator, FastGANGenerator
from monet.nets.fastgan import SkipExcitation


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
