"""A periodic-artifact check: how much of an image set's detail sits on a fixed pixel grid.

Stride-2 transposed convolutions (and strided critics' gradients) can print a pattern that
repeats every 2 or 4 pixels (Odena et al. 2016). Its energy lands on the Fourier bins whose
frequencies are multiples of 1/`period` cycles per pixel. `grid_share` is the share of each
image's non-constant energy (grey levels, mean removed) in those bins, averaged over the set;
paintings spread their energy smoothly (a 1/f spectrum), so a generator with a grid scores many
times the paintings' share.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def grid_share(images: Tensor, period: int = 4) -> float:
    """Mean share of AC power at the frequencies of a `period`-px grid, images (B, C, H, W)."""
    grey = images.float().mean(dim=1)  # (B, H, W)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().square()  # (B, H, W)
    h, w = grey.shape[-2:]
    on_grid = torch.zeros(h, w, dtype=torch.bool)
    on_grid[:: h // period if h >= period else 1, :: w // period if w >= period else 1] = True
    on_grid[0, 0] = False  # the mean, removed above
    share = power[:, on_grid].sum(dim=1) / power.sum(dim=(1, 2)).clamp_min(1e-12)
    return float(share.mean())
