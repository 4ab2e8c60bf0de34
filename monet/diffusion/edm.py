"""EDM-form training (Karras et al. 2022, "Elucidating the design space of diffusion-based
generative models"): a preconditioned denoiser, log-normal noise levels and EDM's loss weight.

Like `GaussianDiffusion` it owns no network: `loss` and `denoise` take `net`. It trains in sigma
form (x = x0 + sigma eps) and samples with the sigma-form samplers (`heun`, `dpmpp_2m`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from monet.errors import ConfigError


class EDMDiffusion(nn.Module):
    """Continuous noise levels sigma with the preconditioning of Karras et al. 2022, Table 1.

    The network F sees c_in x (unit variance at every sigma when the data's std is
    `sigma_data`) at the noise label c_noise, and the denoiser is D = c_skip x + c_out F, so
    F's training target also has unit variance. Training draws ln sigma ~ N(p_mean, p_std²)
    and weights the loss by lambda(sigma) = 1 / c_out², which makes it the plain squared error
    of F against its target (Eq. 8 and Table 1).

    EDM's noise label is ln(sigma) / 4; here it is the same affine function of ln sigma
    rescaled so [sigma_min, sigma_max] spans [0, `timesteps`), the step range the U-Nets'
    sinusoidal time embeddings were built for, so any denoiser of the suite takes it.

    Args:
        sigma_data: the training images' standard deviation in [-1, 1] (EDM: 0.5; measure it
            with `measure_sigma_data` for other data: the configs state the paintings').
        p_mean, p_std: the log-normal of the training sigmas (EDM: -1.2, 1.2).
        sigma_min, sigma_max: the sampling range (EDM: 0.002, 80).
    """

    timesteps = 1000  # the step range the noise label is mapped onto

    def __init__(
        self,
        sigma_data: float = 0.5,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ) -> None:
        super().__init__()
        if not sigma_data > 0 or not p_std > 0:
            raise ConfigError(
                f"EDMDiffusion sigma_data={sigma_data} and p_std={p_std} must be > 0 "
                "(EDM: 0.5 and 1.2)."
            )
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(
                f"EDMDiffusion needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max} "
                "(EDM: 0.002 and 80)."
            )
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def preconditioning(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in for sigma (B, 1, 1, 1) (Karras et al. 2022, Table 1)."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        return sd2 / total, sigma * self.sigma_data * total.rsqrt(), total.rsqrt()

    def c_noise(self, sigma: Tensor) -> Tensor:
        """The network's noise label: ln sigma, mapped affinely onto [0, timesteps)."""
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return (sigma.float().log() - lo) * ((self.timesteps - 1) / (hi - lo))

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor) -> Tensor:
        """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise): the clean image's estimate."""
        s = sigma.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        c_skip, c_out, c_in = self.preconditioning(s)
        return c_skip * x + c_out * net(c_in * x, self.c_noise(sigma)).to(x.dtype)

    def loss(
        self,
        net: nn.Module,
        x0: Tensor,
        sigma: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """EDM's loss on clean images x0 (B, C, H, W): log-normal sigmas and standard normal
        noise by default, both from `generator` where given (a fixed validation draw)."""
        b = x0.shape[0]
        if sigma is None:
            normal = torch.randn(b, device=x0.device, generator=generator)
            sigma = (normal * self.p_std + self.p_mean).exp()
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        c_skip, c_out, c_in = self.preconditioning(s)
        x = x0 + s * noise
        out = net(c_in * x, self.c_noise(sigma)).float()  # the loss stays in float32
        target = ((x0 - c_skip * x) / c_out).float()  # F's target: (D's target - c_skip x) / c_out
        return (out - target).square().mean()

    def extra_repr(self) -> str:
        return (
            f"sigma_data={self.sigma_data}, p_mean={self.p_mean}, p_std={self.p_std}, "
            f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
        )


def measure_sigma_data(images: Tensor) -> float:
    """The standard deviation of images (uint8, or floats in [-1, 1]) as the model sees them."""
    x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images.float()
    return float(x.std())
