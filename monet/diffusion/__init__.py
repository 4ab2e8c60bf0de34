"""Diffusion: noise schedules (pure functions), the Gaussian process, and samplers.

None of it knows about Lightning, and none of it owns a network: the process and the samplers take
the denoiser `net` as an argument.
"""

from monet.diffusion.edm import EDMDiffusion, measure_sigma_data
from monet.diffusion.process import GaussianDiffusion, extract
from monet.diffusion.samplers import (
    SAMPLERS,
    check_sampler,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    dpmpp_2m_sample,
    heun_sample,
    karras_sigmas,
    sample,
)
from monet.diffusion.schedules import (
    SCHEDULES,
    cosine_betas,
    linear_betas,
    make_betas,
    rescale_zero_terminal_snr,
    sigmoid_betas,
)

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "EDMDiffusion",
    "GaussianDiffusion",
    "check_sampler",
    "dpmpp_2m_sample",
    "heun_sample",
    "karras_sigmas",
    "measure_sigma_data",
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
