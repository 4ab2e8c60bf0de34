"""Noise schedules: pure functions from a step count T to float64 betas of shape (T,).

They are computed in float64 and cast once, by `GaussianDiffusion`, to float32 buffers: the
products and ratios of betas near 0 and 1 lose digits in float32.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from monet.errors import ConfigError


def linear_betas(
    timesteps: int,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    scale: bool = True,
    max_beta: float = 0.999,
) -> Tensor:
    """Betas rising linearly from `beta_start` to `beta_end`, times 1000 / T with `scale`.

    Ho et al.'s endpoints were chosen for T = 1000 (alpha-bar_T = 4e-5); unscaled at the report's
    T = 300 they end at alpha-bar_T = 0.048, so the last step still holds 22% of the image while
    sampling starts from pure noise. Scaling both endpoints by 1000 / T (Nichol & Dhariwal 2021,
    improved-diffusion's `get_named_beta_schedule`) reaches noise at any T (alpha-bar_T = 3e-5 at
    T = 300). At T <= 20 the last scaled betas reach 1 and are clipped at `max_beta`. The report's
    unscaled schedule is `scale=False`, the schedule "linear_unscaled" in a config.
    """
    _check_timesteps(timesteps)
    factor = 1000 / timesteps if scale else 1.0
    # Ho et al. 2020, Sec. 4: beta_1 = 1e-4 ... beta_T = 0.02, linearly spaced, T = 1000.
    betas = torch.linspace(beta_start * factor, beta_end * factor, timesteps, dtype=torch.float64)
    return betas.clamp(max=max_beta)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas whose alpha-bar follows a squared cosine, so noise is added slowly at first.

    The report clips betas to [1e-4, 0.999]; the paper clips only above, which keeps
    alpha-bar_t = f(t) / f(0) exactly wherever beta_t < `max_beta`. This follows the paper.
    """
    _check_timesteps(timesteps)
    t = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    # Nichol & Dhariwal 2021, Eq. 17: alpha-bar_t = f(t) / f(0), f(t) = cos²((t/T + s)/(1 + s) π/2).
    f = torch.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def sigmoid_betas(
    timesteps: int, start: float = -3, end: float = 3, tau: float = 1, max_beta: float = 0.999
) -> Tensor:
    """Betas whose alpha-bar follows a sigmoid; better than cosine for images above 64 px."""
    _check_timesteps(timesteps)
    t = torch.linspace(0, 1, timesteps + 1, dtype=torch.float64)
    v_start = torch.tensor(start / tau, dtype=torch.float64).sigmoid()
    v_end = torch.tensor(end / tau, dtype=torch.float64).sigmoid()
    # Jabri et al. 2022; Chen 2023, Algorithm 1: gamma(t) = (v_end - σ((t(end-start)+start)/τ))
    # / (v_end - v_start), which falls from 1 at t = 0 to 0 at t = 1.
    alphas_cumprod = (v_end - ((t * (end - start) + start) / tau).sigmoid()) / (v_end - v_start)
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """The betas whose sqrt(alpha-bar) is shifted and scaled to end at 0 and start unchanged.

    Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", Algorithm 1:
    alpha-bar_T = 0 (zero terminal SNR), so training sees the pure noise sampling starts from.
    The last beta is 1; an eps objective is then ill-posed at t = T (see `GaussianDiffusion`).
    """
    sqrt_ab = torch.cumprod(1 - betas.double(), dim=0).sqrt()
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alphas_cumprod = sqrt_ab.square()
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas


SCHEDULES = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "linear_unscaled": partial(linear_betas, scale=False),  # the report's, T = 1000 endpoints
}


def make_betas(name: str, timesteps: int) -> Tensor:
    """The betas of the schedule called `name` (one of `SCHEDULES`), in float64."""
    if name not in SCHEDULES:
        raise ConfigError(
            f"unknown noise schedule {name!r}: use one of {', '.join(map(repr, SCHEDULES))} "
            "(diffusion schedule in the config)."
        )
    return SCHEDULES[name](timesteps)


def _check_timesteps(timesteps: int) -> None:
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ConfigError(f"timesteps={timesteps!r} must be a positive integer, such as 1000.")
