"""The sliced Wasserstein distance over Laplacian-pyramid patches: the pyramid reconstructs the
image, real against real scores below real against noise, reference statistics see a colour
cast, and bad inputs are refused."""

from __future__ import annotations

import pytest
import torch
from support import paintings

from monet.errors import DataError
from monet.metrics.swd import laplacian_pyramid, sliced_wasserstein_distance


def test_laplacian_pyramid_reconstructs_the_image():
    x = paintings(2, 64)
    levels = laplacian_pyramid(x, 3)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    from monet.metrics.swd import _up

    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + _up(rebuilt, band.shape[-2:])
    assert torch.allclose(rebuilt, x, atol=1e-5)


def test_swd_orders_real_vs_real_below_real_vs_noise():
    real = paintings(32, 64)
    a, b = real[:16], real[16:]
    noise = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kw = {"patches_per_image": 32, "directions": 64, "repeats": 1}
    rr = sliced_wasserstein_distance(a, b, **kw)
    rn = sliced_wasserstein_distance(a, noise, **kw)
    assert rr.resolutions == [64, 32, 16] and len(rr.per_level) == 3
    assert rr.mean < rn.mean and rr.per_level[0] < rn.per_level[0]
    assert rr.mean == pytest.approx(sum(rr.per_level) / 3)
    assert sliced_wasserstein_distance(a, b, **kw) == rr  # deterministic for a seed
    assert sliced_wasserstein_distance(a, b, seed=1, **kw) != rr
    assert set(rr.to_dict()) == {"swd_64", "swd_32", "swd_16", "swd_mean"}


def test_swd_with_reference_statistics_sees_a_colour_cast():
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(24, 3, 32, 32, generator=gen) for _ in range(2))
    cast = b * 0.5 + torch.tensor([0.4, 0.1, -0.3])[:, None, None]  # darker, tinted
    kw = {"patches_per_image": 32, "directions": 32, "repeats": 1}
    same = sliced_wasserstein_distance(a, b, normalise="reference", **kw).mean
    per_set = sliced_wasserstein_distance(a, cast, **kw).mean
    reference = sliced_wasserstein_distance(a, cast, normalise="reference", **kw).mean
    assert per_set < 2 * same  # ProGAN's per-set scaling hides the cast
    assert reference > 10 * same


def test_swd_rejects_mismatched_or_tiny_images():
    with pytest.raises(DataError, match="same image size"):
        sliced_wasserstein_distance(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 64, 64))
    with pytest.raises(DataError, match="smaller than min_resolution"):
        sliced_wasserstein_distance(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
