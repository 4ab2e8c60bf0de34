"""GAN losses in one place. Networks return raw scores (logits); no sigmoid anywhere else."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GanLoss = Literal["wgan_gp", "bce", "hinge", "lsgan"]


def critic_loss(kind: GanLoss, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator/critic objective to minimise, from its scores on real and fake images."""
    if kind == "wgan_gp":  # Arjovsky et al. 2017, Eq. 3 (negated)
        return fake.mean() - real.mean()
    if kind == "bce":  # Goodfellow et al. 2014, Eq. 1, on logits
        return F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    if kind == "hinge":  # Lim & Ye 2017
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "lsgan":  # Mao et al. 2017, Eq. 2 with a=0, b=1 (its 1/2 kept)
        return 0.5 * (
            F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))
        )
    raise ValueError(f"loss={kind!r} is not known: use wgan_gp, bce, hinge or lsgan.")


def generator_loss(kind: GanLoss, fake: torch.Tensor) -> torch.Tensor:
    """The generator objective to minimise, from the critic's scores on its images."""
    if kind in ("wgan_gp", "hinge"):
        return -fake.mean()
    if kind == "bce":  # the non-saturating loss
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":  # Mao et al. 2017, Eq. 2 with c=1, no 1/2: as CycleGAN
        return F.mse_loss(fake, torch.ones_like(fake))
    raise ValueError(f"loss={kind!r} is not known: use wgan_gp, bce, hinge or lsgan.")


def cycle_loss(real: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """||F(G(x)) - x||_1 as a mean: one direction of the cycle loss (Zhu et al. 2017, Eq. 2)."""
    return F.l1_loss(reconstructed, real)


def identity_loss(real: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """||G(y) - y||_1 as a mean, y from G's target domain (Zhu et al. 2017, Sec. 5.2).

    Taigman et al. 2017's identity term: it keeps the translator from shifting input colours.
    """
    return F.l1_loss(mapped, real)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates (Gulrajani et al. 2017, Eq. 3).

    Computed in float32 even under autocast: the penalty squares small differences of norms.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device)
    x_hat = (eps * real.float() + (1 - eps) * fake.float()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        scores = critic(x_hat)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(critic: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] on real images (Mescheder et al. 2018, Eq. 9, without gamma / 2).

    In float32 even under autocast, like the gradient penalty.
    """
    x = real.detach().float().requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def patch_nce_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """PatchNCE (Park et al. 2020, Eq. 2-3): each output patch's embedding `q` must pick out the
    input patch at the same location among the other locations of the same image.

    q, k: (B, P, D) L2-normalised embeddings of P patches per image (k is the input's, and is
    not differentiated). The loss is the mean over the B x P patches of the cross-entropy of
    (q_i . k_j / temperature)_j with target j = i. CUT's reference concatenates the positive
    to the negatives with the diagonal masked to -10 / temperature: the same value up to
    exp(-10 / 0.07), about 1e-62. In float32 under autocast.
    """
    q, k = q.float(), k.detach().float()
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature  # (B, P, P): row i, location j
    b, p, _ = logits.shape
    target = torch.arange(p, device=q.device).repeat(b)  # the positive: the same location
    return F.cross_entropy(logits.flatten(0, 1), target)
