"""The Gaussian diffusion process: schedule buffers, the forward process q(x_t | x_0), the loss.

The process owns the coefficients; the denoiser `net` is passed to each method, so the EMA copy of
a network can be used for sampling without touching the process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from monet.diffusion.schedules import make_betas, rescale_zero_terminal_snr
from monet.errors import ConfigError

OBJECTIVES = ("eps", "x0", "v")
LOSSES = ("l1", "l2")
LOSS_WEIGHTS = ("uniform", "eps_equivalent")


def extract(coefs: Tensor, t: Tensor, ndim: int = 4) -> Tensor:
    """The per-sample coefficients `coefs[t]`, shaped (B, 1, 1, 1) to broadcast over images."""
    return coefs[t].view(-1, *([1] * (ndim - 1)))  # (B,) -> (B, 1, 1, 1)


class GaussianDiffusion(nn.Module):
    """A discrete-time Gaussian diffusion with T steps, t = 0 .. T-1.

    `objective` is what the network predicts: the noise ("eps", Ho et al. 2020), the clean image
    ("x0") or the velocity ("v", Salimans & Ho 2022). `loss` is "l1" (the report's) or "l2".

    `loss_weight` weights the loss per step: "uniform" (1, Ho et al.'s simple loss) or
    "eps_equivalent", which makes every objective's loss equal to the eps loss of the same
    prediction: 1 for eps, SNR for x0 and SNR / (SNR + 1) for v with "l2" (x_t = a x0 + s eps
    gives |eps error|² = SNR |x0 error|² = SNR / (SNR + 1) |v error|²), their square roots
    with "l1". With "l2" it is lucidrains' denoising-diffusion-pytorch default (its
    `min_snr_loss_weight=False`). `min_snr_gamma` turns on Min-SNR-γ weighting instead (Hang et
    al. 2023; 5 is the paper's value): the "l2" eps-equivalent weight times min(SNR, γ) / SNR.

    `zero_terminal_snr` rescales the schedule so alpha-bar_T = 0 (Lin et al. 2024, Algorithm 1,
    `rescale_zero_terminal_snr`): training then sees the pure noise sampling starts from. At
    t = T the eps target is x_T itself and says nothing of x0 (x0 from eps is 0 / 0), so it needs
    the "v" (Lin et al.'s) or "x0" objective; there the SNR and the x0 and v weights above are 0.
    """

    def __init__(
        self,
        schedule: str = "linear",
        timesteps: int = 1000,
        objective: str = "eps",
        loss: str = "l1",
        min_snr_gamma: float | None = None,
        loss_weight: str = "uniform",
        zero_terminal_snr: bool = False,
    ) -> None:
        super().__init__()
        check_options(objective, loss, min_snr_gamma, loss_weight, zero_terminal_snr)
        self.schedule, self.timesteps = schedule, timesteps
        self.objective, self.loss_type, self.min_snr_gamma = objective, loss, min_snr_gamma
        self.loss_weighting, self.zero_terminal_snr = loss_weight, zero_terminal_snr

        betas = make_betas(schedule, timesteps)  # float64, (T,)
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)  # beta_T = 1, alpha-bar_T = 0
        coefs = coefficients(betas)
        coefs["loss_weight"] = loss_weights(
            coefs["snr"], objective, loss, min_snr_gamma, loss_weight
        )
        for name, value in coefs.items():
            # Derived from the config, so kept out of checkpoints.
            self.register_buffer(name, value.float(), persistent=False)
        # A float64 CPU copy, not a buffer (some devices have no float64), for samplers that
        # take ratios of alpha-bars close to 1, such as DDIM's sigma.
        self.alphas_cumprod64 = alphas_cumprod = coefs["alphas_cumprod"]
        # The same process in sigma form (Karras et al. 2022, Eq. 2 and Table 1, "VP"):
        # x = x_t / sqrt(alpha-bar_t) is the clean image plus noise of std sigma_t =
        # sqrt((1 - alpha-bar_t) / alpha-bar_t). Infinite at zero terminal SNR: kept finite here.
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        finite = sigmas[sigmas.isfinite()]
        self.register_buffer("log_sigmas", finite.log().float(), persistent=False)
        self.sigma_min, self.sigma_max = float(finite[0]), float(finite[-1])

    # Forward process ------------------------------------------------------------------------

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t ~ q(x_t | x_0) for integer steps t of shape (B,)."""
        if noise is None:
            noise = torch.randn_like(x0)
        # Ho et al. 2020, Eq. 4: x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps.
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise
        )

    def target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """What the network should output for x_t = q_sample(x0, t, noise)."""
        if self.objective == "eps":
            return noise
        if self.objective == "x0":
            return x0
        # Salimans & Ho 2022, Sec. 4: v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x_0.
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.ndim) * noise
            - extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * x0
        )

    def loss(
        self,
        net: nn.Module,
        x0: Tensor,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The scalar training loss of `net` on clean images x0 (B, C, H, W) in [-1, 1].

        t defaults to steps drawn uniformly from [0, T) and noise to standard normal noise, both
        from `generator` where given (a fixed validation draw).
        """
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.timesteps, (b,), device=x0.device, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        x_t = self.q_sample(x0, t, noise)
        out = net(x_t, t).float()  # the loss stays in float32 under autocast
        diff = out - self.target(x0, t, noise).float()
        err = diff.abs() if self.loss_type == "l1" else diff.square()
        per_sample = err.flatten(1).mean(dim=1)  # (B,)
        return (per_sample * self.loss_weight[t]).mean()

    # Reverse process ------------------------------------------------------------------------

    def predict_x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        # Ho et al. 2020, Eq. 4 solved for x_0; only for objective eps, refused at alpha-bar_T = 0.
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t.ndim) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.ndim) * eps
        )

    def predict_eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        # Ho et al. 2020, Eq. 4 solved for eps; finite at alpha-bar_T = 0 (eps = x_t there).
        return (x_t - extract(self.sqrt_alphas_cumprod, t, x_t.ndim) * x0) / extract(
            self.sqrt_one_minus_alphas_cumprod, t, x_t.ndim
        )

    def model_predictions(
        self, net: nn.Module, x_t: Tensor, t: Tensor, clip: bool = True
    ) -> tuple[Tensor, Tensor]:
        """`net`'s estimates (x0, eps) at x_t, whatever its objective.

        With `clip`, x0 is clamped to [-1, 1] and eps re-derived from it, so the pair stays
        consistent: x_t = sqrt(alpha-bar_t) x0 + sqrt(1 - alpha-bar_t) eps.
        """
        out = net(x_t, t).to(x_t.dtype)
        if self.objective == "eps":
            eps = out
            x0 = self.predict_x0_from_eps(x_t, t, eps)
        elif self.objective == "x0":
            x0 = out
            eps = self.predict_eps_from_x0(x_t, t, x0)
        else:
            a = extract(self.sqrt_alphas_cumprod, t, x_t.ndim)
            s = extract(self.sqrt_one_minus_alphas_cumprod, t, x_t.ndim)
            # Salimans & Ho 2022, Sec. 4: x_0 = a x_t - s v and eps = s x_t + a v (a² + s² = 1).
            x0 = a * x_t - s * out
            eps = s * x_t + a * out
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = self.predict_eps_from_x0(x_t, t, x0)
        return x0, eps

    # Sigma form: what the samplers of Karras et al. and DPM-Solver++ step through ----------

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The fractional step t whose sigma_t is `sigma`, linear in log sigma between two
        steps (k-diffusion's discrete schedules); clamped to the schedule's finite range."""
        log_sigmas = self.log_sigmas
        log_sigma = sigma.float().log().clamp(log_sigmas[0], log_sigmas[-1])
        hi = torch.searchsorted(log_sigmas, log_sigma).clamp(1, len(log_sigmas) - 1)
        lo_val, hi_val = log_sigmas[hi - 1], log_sigmas[hi]
        return (hi - 1) + (log_sigma - lo_val) / (hi_val - lo_val)

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor) -> Tensor:
        """`net`'s estimate of the clean image from x = x0 + sigma eps (sigma: (B,)), whatever
        its objective: the network sees x_t = sqrt(alpha-bar) x at its fractional step."""
        s = sigma.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        a = (1 + s**2).rsqrt()  # sqrt(alpha-bar); sigma a = sqrt(1 - alpha-bar)
        x_t = a * x
        out = net(x_t, self.sigma_to_t(sigma)).to(x.dtype)
        if self.objective == "eps":
            return x - s * out  # x_0 = (x_t - sqrt(1 - alpha-bar) eps) / sqrt(alpha-bar)
        if self.objective == "x0":
            return out
        return a * (x_t - s * out)  # Salimans & Ho 2022: x_0 = a x_t - sqrt(1 - a²) v

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0); var is (B, 1, 1, 1)."""
        # Ho et al. 2020, Eqs. 6-7.
        mean = (
            extract(self.posterior_mean_coef1, t, x_t.ndim) * x0
            + extract(self.posterior_mean_coef2, t, x_t.ndim) * x_t
        )
        var = extract(self.posterior_variance, t, x_t.ndim)
        log_var = extract(self.posterior_log_variance_clipped, t, x_t.ndim)
        return mean, var, log_var

    def extra_repr(self) -> str:
        return (
            f"schedule={self.schedule!r}, timesteps={self.timesteps}, "
            f"objective={self.objective!r}, loss={self.loss_type!r}, "
            f"min_snr_gamma={self.min_snr_gamma}, loss_weight={self.loss_weighting!r}, "
            f"zero_terminal_snr={self.zero_terminal_snr}"
        )


def check_options(
    objective: str,
    loss: str,
    min_snr_gamma: float | None,
    loss_weight: str,
    zero_terminal_snr: bool,
) -> None:
    """Refuse, in one line each, a combination of GaussianDiffusion's options that cannot work."""
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"unknown diffusion objective {objective!r}: use one of "
            f"{', '.join(map(repr, OBJECTIVES))}."
        )
    if loss not in LOSSES:
        raise ConfigError(f"unknown diffusion loss {loss!r}: use 'l1' or 'l2'.")
    if min_snr_gamma is not None and not min_snr_gamma > 0:
        raise ConfigError(
            f"min_snr_gamma={min_snr_gamma!r} must be positive (5 in Hang et al. 2023), "
            "or null to turn the weighting off."
        )
    if loss_weight not in LOSS_WEIGHTS:
        raise ConfigError(
            f"unknown diffusion loss_weight {loss_weight!r}: use 'uniform' or 'eps_equivalent'."
        )
    if zero_terminal_snr and objective == "eps":
        raise ConfigError(
            "zero_terminal_snr=true with objective 'eps': at alpha-bar_T = 0 the input is pure "
            "noise, eps is x_T itself and x0 cannot be derived from it (Lin et al. 2024). Use "
            "objective: v (or x0), or zero_terminal_snr: false."
        )


def coefficients(betas: Tensor) -> dict[str, Tensor]:
    """Every per-step coefficient of the process with these betas (float64, (T,) each)."""
    alphas = 1 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_cumprod_prev = F.pad(alphas_cumprod[:-1], (1, 0), value=1.0)
    # Ho et al. 2020, Eq. 7: the posterior q(x_{t-1} | x_t, x_0) = N(mean, beta-tilde_t).
    posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "sqrt_recip_alphas_cumprod": alphas_cumprod.rsqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / alphas_cumprod - 1).sqrt(),
        "posterior_variance": posterior_variance,
        # beta-tilde_0 = 0: repeat beta-tilde_1 so the log stays finite (Nichol & Dhariwal).
        "posterior_log_variance_clipped": torch.cat(
            [posterior_variance[1:2], posterior_variance[1:]]
        ).log(),
        # Ho et al. 2020, Eq. 7: mean = coef1 * x_0 + coef2 * x_t.
        "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
        "posterior_mean_coef2": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        "snr": alphas_cumprod / (1 - alphas_cumprod),  # 0 at t = T with zero_terminal_snr
    }


def loss_weights(
    snr: Tensor, objective: str, loss: str, min_snr_gamma: float | None, loss_weight: str
) -> Tensor:
    """Each step's weight on the training loss."""
    if min_snr_gamma is not None:
        # Hang et al. 2023, Eq. 9 and Sec. 3.4: min(SNR, γ) is the weight of an x0 loss; an
        # eps loss already carries a factor SNR and a v loss a factor SNR + 1.
        clipped = snr.clamp(max=min_snr_gamma)
        return {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[objective]
    if loss_weight == "eps_equivalent":
        weight = {"eps": torch.ones_like(snr), "x0": snr, "v": snr / (snr + 1)}[objective]
        # |eps error| = sqrt(SNR) |x0 error| = sqrt(SNR / (SNR + 1)) |v error|
        return weight.sqrt() if loss == "l1" else weight
    return torch.ones_like(snr)
