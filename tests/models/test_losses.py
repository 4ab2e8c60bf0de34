"""Losses against closed forms: the gradient penalty, Wasserstein, BCE, hinge, least squares,
R1, cycle, identity and PatchNCE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from monet.models.losses import (
    critic_loss,
    cycle_loss,
    generator_loss,
    gradient_penalty,
    identity_loss,
    patch_nce_loss,
    r1_penalty,
)


class Linear(nn.Module):
    """D(x) = <w, x>: the input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


class Quadratic(nn.Module):
    """D(x) = ||x||^2 / 2: the input gradient is x itself."""

    def forward(self, x):
        return 0.5 * x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_linear_critic():
    w = torch.full((1, 3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48)
    real, fake = torch.randn(8, 3, 4, 4), torch.randn(8, 3, 4, 4)
    expected = (0.5 * math.sqrt(48) - 1) ** 2
    assert gradient_penalty(Linear(w), real, fake).item() == pytest.approx(expected, rel=1e-6)
    unit = torch.zeros(1, 3, 4, 4)
    unit[0, 0, 0, 0] = 1.0
    assert gradient_penalty(Linear(unit), real, fake).item() == pytest.approx(0.0, abs=1e-12)


def test_gradient_penalty_quadratic_critic_uses_the_interpolates():
    real, fake = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    gp = gradient_penalty(Quadratic(), real, fake, generator=torch.Generator().manual_seed(5))
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    x_hat = eps * real + (1 - eps) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_is_differentiable_in_critic_weights():
    critic = Linear(torch.full((1, 3, 4, 4), 0.5))
    gp = gradient_penalty(critic, torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4))
    gp.backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    norm = 0.5 * math.sqrt(48)
    assert torch.allclose(critic.w.grad, torch.full_like(critic.w, 2 * (norm - 1) * 0.5 / norm))


def test_wasserstein_and_bce_and_hinge_values():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])
    assert critic_loss("wgan_gp", real, fake).item() == pytest.approx(0.0 - 3.0)
    assert generator_loss("wgan_gp", fake).item() == pytest.approx(0.0)
    assert critic_loss("hinge", real, fake).item() == pytest.approx(0.0 + 1.0)
    sp = torch.nn.functional.softplus
    expected = sp(-real).mean() + sp(fake).mean()
    assert critic_loss("bce", real, fake).item() == pytest.approx(expected.item())
    assert generator_loss("bce", fake).item() == pytest.approx(sp(-fake).mean().item())
    with pytest.raises(ValueError, match="loss='wgan' is not known"):
        critic_loss("wgan", real, fake)


def test_r1_penalty_closed_forms():
    w = torch.full((1, 3, 4, 4), 0.25)
    real = torch.randn(5, 3, 4, 4)
    assert r1_penalty(Linear(w), real).item() == pytest.approx((w**2).sum().item(), rel=1e-6)
    expected = real.flatten(1).pow(2).sum(1).mean()
    assert r1_penalty(Quadratic(), real).item() == pytest.approx(expected.item(), rel=1e-5)


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


def test_patch_nce_is_the_cross_entropy_of_each_patch_against_the_others_of_its_image():
    # image 0: two patches, unit embeddings; q's patch 0 leans toward k's patch 1
    s = 1 / math.sqrt(2)
    q = torch.tensor([[[s, s], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])  # (B=2, P=2, D=2)
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    t = 0.5
    # row i: -log(exp(q_i.k_i / t) / sum_j exp(q_i.k_j / t)), j over the same image only
    by_hand = [
        -math.log(math.exp(s / t) / (math.exp(s / t) + math.exp(s / t))),  # log 2: a tie
        -math.log(math.exp(1 / t) / (math.exp(0) + math.exp(1 / t))),
        -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0))),
        -math.log(math.exp(0) / (math.exp(1 / t) + math.exp(0))),  # its positive is the worst
    ]
    assert patch_nce_loss(q, k, t).item() == pytest.approx(sum(by_hand) / 4, rel=1e-6)
    # the other image's patches are no negatives: image 1's k alone decides its rows
    other = k.clone()
    other[0] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    half = patch_nce_loss(q[1:], k[1:], t).item()
    assert patch_nce_loss(q[1:], other[1:], t).item() == pytest.approx(half)
    assert half == pytest.approx(sum(by_hand[2:]) / 2, rel=1e-6)


def test_patch_nce_differentiates_the_outputs_only():
    q = torch.nn.functional.normalize(torch.randn(2, 5, 4), dim=-1).requires_grad_(True)
    k = torch.nn.functional.normalize(torch.randn(2, 5, 4), dim=-1).requires_grad_(True)
    patch_nce_loss(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0 and k.grad is None
    aligned = patch_nce_loss(k.detach(), k.detach(), 0.07)  # each patch is its own best match
    assert aligned < patch_nce_loss(k.detach().flip(1), k.detach(), 0.07)
