"""The DCGAN networks: shapes at every size, and the report's model at 256 px."""

from __future__ import annotations

import pytest
import torch

from monet.errors import ConfigError
from monet.nets import DCGANDiscriminator, DCGANGenerator


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
