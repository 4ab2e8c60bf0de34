"""Diffusion: noise schedules (pure functions), the Gaussian process, and samplers.

None of it knows about Lightning, and none of it owns a network: the process and the samplers take
the denoiser `net` as an argument.
"""

from monet.diffusion.process import GaussianDiffusion, extract
from monet.diffusion.samplers import ddim_sample, ddim_timesteps, ddpm_sample, sample
from monet.diffusion.schedules import (
    SCHEDULES,
    cosine_betas,
    linear_betas,
    make_betas,
    rescale_zero_terminal_snr,
    sigmoid_betas,
)

__all__ = [
    "SCHEDULES",
    "GaussianDiffusion",
    "cosine_betas",
    "ddim_sample",
    "ddim_timesteps",
    "ddpm_sample",
    "extract",
    "linear_betas",
    "make_betas",
    "rescale_zero_terminal_snr",
    "sample",
    "sigmoid_betas",
]
