"""The spectrum check: grid_share finds the periodic dot pattern that strided transposed
convolutions print."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def test_grid_share_finds_a_periodic_dot_pattern():
    from monet.metrics.spectrum import grid_share

    gen = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(16, 3, 8, 8, generator=gen), size=64, mode="bicubic")
    dots = smooth.clone()
    dots[:, :, ::4, ::4] -= 0.3  # a dark dot every 4 px
    clean = grid_share(smooth)
    assert clean < 0.01
    assert grid_share(dots) > 10 * clean
    assert grid_share(dots, period=8) > grid_share(smooth, period=8)  # 4-px dots are on 8's grid
