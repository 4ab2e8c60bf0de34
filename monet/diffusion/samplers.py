"""Samplers: DDPM (ancestral, T steps) and DDIM (any number of steps, eta from 0 to 1) on the
discrete schedule; EDM's Heun (2nd order, optional churn) and DPM-Solver++(2M) in sigma form.

Each takes the process and the denoiser separately, so an EMA copy of the network can be passed
in. They run under `torch.inference_mode()` with `net` in eval mode, and give each module back
the train/eval mode it had. Pass a `torch.Generator` to make the noise reproducible: DDPM and
DDIM draw one normal tensor per step, in the same order, so DDIM with every step and eta = 1
retraces DDPM.

The sigma-form samplers step x = x0 + sigma eps on Karras et al.'s sigmas (rho = 7: most steps
at low noise, where detail forms) through `process.denoise(net, x, sigma)`, which every process
provides: the discrete `GaussianDiffusion` through its one conversion between steps and sigmas
(any objective and schedule), `EDMDiffusion` through its preconditioning.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from monet.diffusion.edm import EDMDiffusion
from monet.diffusion.process import GaussianDiffusion
from monet.errors import ConfigError, Interrupted
from monet.nets.common import eval_mode

SAMPLERS = ("ddpm", "ddim", "heun", "dpmpp_2m")
DISCRETE = ("ddpm", "ddim")  # samplers of the discrete schedule only
DEFAULT_DDIM_STEPS = 50
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # Karras et al. 2022's sampling range, within the process's
Process = GaussianDiffusion | EDMDiffusion
Denoise = Callable[[Tensor, float], Tensor]  # (x, sigma) -> the clean image's estimate


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


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """`steps` + 1 noise levels from sigma_max down to sigma_min, then 0 (float64).

    Karras et al. 2022, Eq. 5:
    sigma_i = (max^(1/rho) + i / (N - 1) (min^(1/rho) - max^(1/rho)))^rho.
    """
    if steps < 1:
        raise ConfigError(f"sampling steps={steps} must be at least 1.")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho if steps > 1 else torch.tensor([sigma_max]).double()
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def sampling_sigmas(process: Process, steps: int) -> Tensor:
    """The Karras sigmas a sigma-form sampler takes on `process`: EDM's range [0.002, 80],
    narrowed to what the process's schedule covers."""
    lo = max(SIGMA_MIN, process.sigma_min)
    return karras_sigmas(steps, lo, max(min(SIGMA_MAX, process.sigma_max), lo * 1.0001))


def heun_sample(
    denoise: Denoise,
    x: Tensor,
    sigmas: Tensor,
    churn: float = 0.0,
    generator: Generators = None,
    progress: bool = False,
    stop: StopCheck = None,
) -> Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 2): Heun's 2nd-order method on the
    probability-flow ODE, Euler at the last step (to sigma 0), 2N - 1 network evaluations.

    `churn` (S_churn) adds fresh noise before each step, raising sigma by the factor
    1 + min(churn / N, sqrt(2) - 1) (Algorithm 2, lines 4-6): 0 is deterministic.
    """
    n = len(sigmas) - 1
    gamma = min(churn / n, 2**0.5 - 1)
    levels = sigmas.tolist()
    for i in tqdm(range(n), desc="Heun", disable=not progress):
        _check(stop, i, n)
        s, s_next = levels[i], levels[i + 1]
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + (s_hat**2 - s**2) ** 0.5 * _noise_like(x, generator)
        d = (x - denoise(x, s_hat)) / s_hat  # dx/dsigma (Eq. 3)
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:  # the 2nd-order correction (Algorithm 2, lines 9-11)
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * (d + d_next) / 2
        x = x_next
    return x


def dpmpp_2m_sample(
    denoise: Denoise, x: Tensor, sigmas: Tensor, progress: bool = False, stop: StopCheck = None
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a multistep 2nd-order solver in
    log-SNR time that reuses the previous step's denoised image, N network evaluations."""
    n = len(sigmas) - 1
    levels = sigmas.tolist()
    previous, h_last = None, 0.0
    for i in tqdm(range(n), desc="DPM++2M", disable=not progress):
        _check(stop, i, n)
        s, s_next = levels[i], levels[i + 1]
        denoised = denoise(x, s)
        if s_next == 0:  # the last step lands on the estimate itself
            return denoised
        h = math.log(s / s_next)  # lambda = -log sigma: the step in log-SNR / 2
        step = denoised
        if previous is not None:  # D = (1 + 1/2r) D_i - 1/2r D_{i-1}, r = h_{i-1} / h_i
            r = h_last / h
            step = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        x = (s_next / s) * x - math.expm1(-h) * step
        previous, h_last = denoised, h
    return x


def check_sampler(process: Process, sampler: str, steps: int | None = None) -> None:
    """A one-line error for a sampler, or a step count, that cannot run on `process`."""
    if sampler not in SAMPLERS:
        raise ConfigError(
            f"unknown sampler {sampler!r}: use one of {', '.join(map(repr, SAMPLERS))}."
        )
    discrete = isinstance(process, GaussianDiffusion)
    if sampler in DISCRETE and not discrete:
        raise ConfigError(
            f"sampler {sampler!r} steps through a discrete schedule; {type(process).__name__} "
            "samples in sigma form: use sampler 'heun' or 'dpmpp_2m'."
        )
    high = process.timesteps if discrete else None  # more steps than the schedule has: none
    if steps is not None and (steps < 1 or (high is not None and steps > high)):
        bound = f"between 1 and the process's timesteps={high}" if high else "at least 1"
        raise ConfigError(f"sampling_steps={steps} must be {bound}.")
    if sampler == "ddpm" and steps not in (None, process.timesteps):
        raise ConfigError(
            f"the DDPM sampler runs all {process.timesteps} steps, not steps={steps}: "
            "use sampler 'ddim', 'heun' or 'dpmpp_2m' to sample in fewer steps."
        )


def sample(
    process: Process,
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
    churn: float = 0.0,
) -> Tensor:
    """Images (N, C, H, W) from starting noise (N, C, H, W), `batch_size` at a time.

    `steps` is the solver's step count (50, or T if smaller, by default): DDIM's and
    DPM-Solver++(2M)'s network evaluations; Heun takes 2 x steps - 1. DDPM always runs all T
    steps. `eta` is DDIM's noise, `churn` Heun's. `generator` gives the per-step noise: one
    for all, or a list with one per image (then image i is the same whatever the batch size).
    """
    check_sampler(process, sampler, steps)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer.")
    steps = steps or min(DEFAULT_DDIM_STEPS, process.timesteps)
    out, start = [], 0
    for x_T in noise.split(batch_size) if batch_size else (noise,):
        gen = generator[start : start + len(x_T)] if isinstance(generator, list) else generator
        start += len(x_T)
        if sampler == "ddpm":
            out.append(ddpm_sample(process, net, x_T, progress, gen, clip, stop))
        elif sampler == "ddim":
            out.append(ddim_sample(process, net, x_T, steps, eta, progress, gen, clip, stop))
        else:
            out.append(
                sigma_sample(process, net, x_T, sampler, steps, churn, progress, gen, clip, stop)
            )
    return torch.cat(out)


def sigma_sample(
    process: Process,
    net: nn.Module,
    x_T: Tensor,
    sampler: str,
    steps: int,
    churn: float = 0.0,
    progress: bool = False,
    generator: Generators = None,
    clip: bool = True,
    stop: StopCheck = None,
) -> Tensor:
    """Denoise unit noise x_T with a sigma-form sampler ('heun' or 'dpmpp_2m') on the Karras
    sigmas of `process`; `clip` clamps each clean-image estimate to [-1, 1]."""
    sigmas = sampling_sigmas(process, steps)

    def denoise(x: Tensor, sigma: float) -> Tensor:
        level = torch.full((x.shape[0],), sigma, device=x.device)
        x0 = process.denoise(net, x, level)
        return x0.clamp(-1, 1) if clip else x0

    with torch.inference_mode(), eval_mode(net):
        x = x_T * sigmas[0].item()  # EDM Algorithm 2, line 1: x ~ N(0, sigma_max² I)
        if sampler == "heun":
            return heun_sample(denoise, x, sigmas, churn, generator, progress, stop)
        return dpmpp_2m_sample(denoise, x, sigmas, progress, stop)
