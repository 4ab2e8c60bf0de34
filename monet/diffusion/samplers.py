"""Samplers: DDPM (ancestral, T steps) and DDIM (any number of steps, eta from 0 to 1).

Each takes the process and the denoiser separately, so an EMA copy of the network can be passed
in. They run under `torch.inference_mode()` with `net` in eval mode, and give each module back
the train/eval mode it had. Pass a `torch.Generator` to make the noise reproducible: both draw one
normal tensor per step, in the same order, so DDIM with every step and eta = 1 retraces DDPM.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from monet.diffusion.process import GaussianDiffusion
from monet.errors import ConfigError, Interrupted
from monet.nets.common import eval_mode

SAMPLERS = ("ddpm", "ddim")
DEFAULT_DDIM_STEPS = 50


Generators = torch.Generator | list[torch.Generator] | None
StopCheck = Callable[[], bool] | None  # asked before each step: True stops the sampler


def _check(stop: StopCheck, step: int, steps: int) -> None:
    if stop is not None and stop():
        raise Interrupted(f"sampling stopped by a signal at step {step + 1} of {steps}")


def _noise_like(x: Tensor, generator: Generators) -> Tensor:
    """Normal noise shaped like x; with a list, image i draws from generator i (on the CPU, so
    a seed gives the same image on any device and in any batch)."""
    if isinstance(generator, list):
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in generator])
        return noise.to(device=x.device, dtype=x.dtype)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddpm_sample(
    process: GaussianDiffusion,
    net: nn.Module,
    x_T: Tensor,
    progress: bool = False,
    generator: Generators = None,
    clip: bool = True,
    stop: StopCheck = None,
) -> Tensor:
    """Denoise x_T (B, C, H, W) through all T steps; `clip` clamps each x0 estimate to [-1, 1];
    `stop` is asked before each step (True raises `Interrupted`)."""
    with torch.inference_mode(), eval_mode(net):
        x = x_T
        steps = reversed(range(process.timesteps))
        for i in tqdm(steps, total=process.timesteps, desc="DDPM", disable=not progress):
            _check(stop, process.timesteps - 1 - i, process.timesteps)
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x0, _ = process.model_predictions(net, x, t, clip=clip)
            mean, var, _ = process.posterior(x0, x, t)
            # Ho et al. 2020, Algorithm 2, with sigma_t² = beta-tilde_t; no noise at the last step.
            x = mean
            if i > 0:
                x = x + var.sqrt() * _noise_like(x, generator)
        return x


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """`steps` evenly spaced steps from T-1 down to 0 (only T-1 when steps == 1)."""
    if not 1 <= steps <= timesteps:
        raise ConfigError(
            f"DDIM steps={steps} must be between 1 and the process's timesteps={timesteps}."
        )
    return torch.linspace(timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def ddim_sample(
    process: GaussianDiffusion,
    net: nn.Module,
    x_T: Tensor,
    steps: int = DEFAULT_DDIM_STEPS,
    eta: float = 0.0,
    progress: bool = False,
    generator: Generators = None,
    clip: bool = True,
    stop: StopCheck = None,
) -> Tensor:
    """Denoise x_T in `steps` steps; eta = 0 is deterministic, eta = 1 is DDPM-like; `stop` is
    asked before each step (True raises `Interrupted`)."""
    if eta < 0:
        raise ConfigError(f"DDIM eta={eta} must be >= 0 (0: deterministic, 1: DDPM-like).")
    times = ddim_timesteps(process.timesteps, steps)
    # Coefficients in float64: 1 - alpha-bar_t / alpha-bar_prev is tiny for small t.
    ac = process.alphas_cumprod64
    ac_now = ac[times]
    ac_prev = torch.cat([ac[times[1:]], ac.new_ones(1)])  # alpha-bar_{-1} = 1: the clean image
    # Song et al. 2021, Eq. 16: sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev).
    sigma = eta * ((1 - ac_prev) / (1 - ac_now) * (1 - ac_now / ac_prev)).sqrt()
    c_eps = (1 - ac_prev - sigma**2).clamp(min=0).sqrt()
    c_x0 = ac_prev.sqrt()

    with torch.inference_mode(), eval_mode(net):
        x = x_T
        # Python floats: exact per-step scalars on any device, no host-device copies.
        coefs = zip(times, c_x0.tolist(), c_eps.tolist(), sigma.tolist())
        for i, (t_i, a, c, s) in enumerate(
            tqdm(coefs, total=steps, desc="DDIM", disable=not progress)
        ):
            _check(stop, i, steps)
            t = torch.full((x.shape[0],), t_i, device=x.device, dtype=torch.long)
            x0, eps = process.model_predictions(net, x, t, clip=clip)
            # Song et al. 2021, Eq. 12: x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma²) eps
            # + sigma z.
            x = a * x0 + c * eps
            if eta > 0 and i < steps - 1:
                x = x + s * _noise_like(x, generator)
        return x


def sample(
    process: GaussianDiffusion,
    net: nn.Module,
    noise: Tensor,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    batch_size: int | None = None,
    progress: bool = False,
    generator: Generators = None,
    clip: bool = True,
    stop: StopCheck = None,
) -> Tensor:
    """Images (N, C, H, W) from starting noise (N, C, H, W), `batch_size` at a time.

    `steps` is DDIM's step count (50, or T if smaller, by default); DDPM always runs all T steps.
    `generator` gives the per-step noise: one for all, or a list with one per image (then image
    i is the same whatever the batch size).
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}: use 'ddpm' or 'ddim'.")
    if sampler == "ddpm" and steps not in (None, process.timesteps):
        raise ConfigError(
            f"the DDPM sampler runs all {process.timesteps} steps, not steps={steps}: "
            "use sampler='ddim' to sample in fewer steps."
        )
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer.")
    steps = steps or min(DEFAULT_DDIM_STEPS, process.timesteps)
    out, start = [], 0
    for x_T in noise.split(batch_size) if batch_size else (noise,):
        gen = generator[start : start + len(x_T)] if isinstance(generator, list) else generator
        start += len(x_T)
        if sampler == "ddpm":
            out.append(ddpm_sample(process, net, x_T, progress, gen, clip, stop))
        else:
            out.append(ddim_sample(process, net, x_T, steps, eta, progress, gen, clip, stop))
    return torch.cat(out)
