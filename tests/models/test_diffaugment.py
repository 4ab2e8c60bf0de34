"""DiffAugment (Zhao et al. 2020): differentiable, each op does what it says, and real and fake
get the same shifts and holes from the same draw."""

from __future__ import annotations

import pytest
import torch

from monet.models import diffaugment as da


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_is_differentiable(policy):
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    ops = da.parse_policy(policy)

    def f(x):  # the same random draw on every call, so gradcheck sees one function
        return da.diff_augment(x, ops, torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)
    f(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_diffaugment_ops_do_what_they_say():
    ones = torch.ones(16, 3, 16, 16)
    cut = da.cutout(ones, torch.Generator().manual_seed(0))
    holes = (cut == 0).flatten(1).sum(1)  # an 8x8 hole per image, clipped at the border
    assert (holes > 0).all() and (holes <= 3 * 8 * 8).all() and (holes == 3 * 8 * 8).any()
    for hole in cut[:, 0] == 0:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert hole[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    moved = da.translation(ones, torch.Generator().manual_seed(0))
    zeros_per_image = (moved == 0).flatten(1).sum(1)
    assert (zeros_per_image > 0).any() and (zeros_per_image <= 3 * (16 * 16 - 14 * 14)).all()
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(da.diff_augment(x, ()), x)
    with pytest.raises(ValueError, match="unknown \\['blur'\\]"):
        da.parse_policy("color,blur")


def test_diffaugment_has_the_same_structure_for_real_and_fake():
    real, fake = torch.rand(4, 3, 16, 16) + 1, torch.rand(4, 3, 16, 16) + 1
    ops = da.parse_policy("translation,cutout")
    a = da.diff_augment(real, ops, torch.Generator().manual_seed(3))
    b = da.diff_augment(fake, ops, torch.Generator().manual_seed(3))
    assert torch.equal(a == 0, b == 0)  # same shifts and same holes
