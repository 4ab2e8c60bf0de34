"""The samplers: an oracle denoiser's samples are x0, DDIM with every step and eta = 1 is DDPM,
the DDIM timesteps, module modes restored, batching, options; Heun and DPM-Solver++(2M)
against closed forms (Gaussian and mixture data) at their order of convergence."""

from __future__ import annotations

import math

import pytest
import torch
from support import OBJECTIVES, TinyDenoiser, alpha_bar, oracle

from monet.diffusion import (
    GaussianDiffusion,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    dpmpp_2m_sample,
    heun_sample,
    karras_sigmas,
    sample,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(
    "sampler,steps,eta",
    [("ddpm", None, 0.0), ("ddim", 100, 0.0), ("ddim", 7, 0.0), ("ddim", 10, 1.0)],
)
def test_samplers_return_x0_for_an_oracle(objective, sampler, steps, eta):
    p = GaussianDiffusion("cosine", 100, objective)
    torch.manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8) * 1.8 - 0.9
    out = sample(p, oracle(p, x0), torch.randn_like(x0), sampler, steps, eta)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_ddim_with_every_step_and_eta_1_is_ddpm(objective):
    T = 60
    p = GaussianDiffusion("linear", T, objective)
    net, x_T = TinyDenoiser(), torch.randn(2, 3, 8, 8)
    ddpm = ddpm_sample(p, net, x_T, generator=torch.Generator().manual_seed(3))
    ddim = ddim_sample(p, net, x_T, T, eta=1.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=2e-5)
    # Not trivially so: other noise, or eta = 0, gives other images.
    other = ddim_sample(p, net, x_T, T, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert (other - ddpm).abs().max() > 0.01
    assert (ddim_sample(p, net, x_T, T, eta=0.0) - ddpm).abs().max() > 0.01


def test_ddim_timesteps():
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    gaps = [a - b for a, b in zip(steps, steps[1:])]
    assert max(gaps) - min(gaps) <= 1
    assert ddim_timesteps(1000, 1) == [999]
    with pytest.raises(ValueError, match="steps=1001"):
        ddim_timesteps(1000, 1001)


def test_samplers_restore_each_module_mode_and_need_no_grad():
    p = GaussianDiffusion("linear", 5)
    net = TinyDenoiser()
    net.train()
    net.bn.eval()  # a frozen norm inside a training net
    for sampler in ("ddpm", "ddim"):
        net.modes.clear()
        out = sample(p, net, torch.randn(2, 3, 4, 4), sampler, progress=True)
        assert net.modes and not any(net.modes)  # eval throughout sampling
        assert net.training and net.conv.training and not net.bn.training
        assert not out.requires_grad
    assert net.conv.weight.grad is None


def test_sample_in_batches_matches_one_batch():
    p = GaussianDiffusion("linear", 20)
    net, noise = TinyDenoiser().eval(), torch.randn(7, 3, 4, 4)
    whole = sample(p, net, noise, "ddim", steps=5)
    parts = sample(p, net, noise, "ddim", steps=5, batch_size=3)
    assert parts.shape == (7, 3, 4, 4)
    torch.testing.assert_close(parts, whole)


def test_sample_options_are_validated():
    p, net, noise = GaussianDiffusion("linear", 20), TinyDenoiser(), torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="sampler 'plms'"):
        sample(p, net, noise, "plms")
    with pytest.raises(ValueError, match="all 20 steps, not steps=5.*ddim"):
        sample(p, net, noise, "ddpm", steps=5)
    with pytest.raises(ValueError, match="eta=-1"):
        sample(p, net, noise, "ddim", eta=-1)


# -- the sigma-form samplers against closed forms ---------------------------------------------
# Data N(mu, sd²) per pixel: the exact denoiser is D(x, s) = mu + sd² / (sd² + s²) (x - mu), and
# the probability-flow ODE from x = s_max z ends at mu + (s_max z - mu) sd / sqrt(sd² + s_max²).
MU, SD = 0.3, 0.5


def gaussian_denoiser(x, sigma):
    return MU + SD**2 / (SD**2 + sigma**2) * (x - MU)


def mixture_denoiser(x, sigma, mus=(-0.6, 0.5), sd=0.1, weights=(0.3, 0.7)):
    """The exact denoiser of a two-component Gaussian mixture (per pixel)."""
    var = sd**2 + sigma**2
    logs = [math.log(w) - (x - m) ** 2 / (2 * var) for m, w in zip(mus, weights)]
    post = torch.stack(logs).softmax(0)  # p(component | x)
    means = torch.stack([m + sd**2 / var * (x - m) for m in mus])
    return (post * means).sum(0)


def ode_end(z, sigma_max):
    return MU + (z * sigma_max - MU) * SD / math.sqrt(SD**2 + sigma_max**2)


def solve(sampler, denoise, z, steps, sigma_max=80.0):
    sigmas = karras_sigmas(steps, 0.002, sigma_max)
    x = z * sigma_max
    if sampler == "heun":
        return heun_sample(denoise, x, sigmas)
    if sampler == "dpmpp_2m":
        return dpmpp_2m_sample(denoise, x, sigmas)
    for s, s_next in zip(sigmas.tolist(), sigmas[1:].tolist()):  # Euler: DDIM in sigma form
        x = x + (s_next - s) * (x - denoise(x, s)) / s
    return x


@pytest.mark.parametrize("sampler,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_sigma_samplers_converge_to_the_ode_solution_at_their_order(sampler, order):
    z = torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = ode_end(z, 80.0)
    errors = [(solve(sampler, gaussian_denoiser, z, n) - exact).abs().max() for n in (20, 40, 80)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(r - order) < 0.3 for r in rates), (errors, rates)
    assert errors[-1] < (0.1 if order == 1 else 0.01)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_sigma_samplers_reach_the_moments_of_a_mixture(sampler):
    z = torch.randn(20000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, var = 0.3 * -0.6 + 0.7 * 0.5, 0.01 + 0.3 * 0.7 * 1.1**2  # within + between
    gaps = []
    for steps in (4, 16, 64):
        x = solve(sampler, mixture_denoiser, z, steps)
        gaps.append(abs(x.mean() - mean) + abs(x.var() - var))
    assert gaps[2] < gaps[0] and gaps[2] < 0.01, gaps
    # the modes are kept: a share near each component's mean, not haze between them
    near = ((x + 0.6).abs() < 0.3).double().mean(), ((x - 0.5).abs() < 0.3).double().mean()
    assert abs(near[0] - 0.3) < 0.02 and abs(near[1] - 0.7) < 0.02


def test_heun_churn_draws_noise_from_the_generator_and_approaches_the_moments():
    z = torch.randn(20000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(seed, steps=32):  # the same churn per step (gamma) at every step count
        gen = torch.Generator().manual_seed(seed)
        sigmas = karras_sigmas(steps, 0.002, 80.0)
        return heun_sample(gaussian_denoiser, z * 80.0, sigmas, churn=steps / 3, generator=gen)

    a = run(3)
    torch.testing.assert_close(run(3), a)
    assert (run(4) - a).abs().max() > 1e-3  # stochastic: other noise, other samples
    gaps = [abs(run(3, steps).std() - SD) for steps in (16, 32, 128)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.01, gaps
    assert abs(run(3, 128).mean() - MU) < 0.01


def test_karras_sigmas():
    s = karras_sigmas(10, 0.002, 80.0)
    assert len(s) == 11 and s[-1] == 0 and s.dtype == torch.float64
    torch.testing.assert_close(s[[0, 9]], torch.tensor([80.0, 0.002], dtype=torch.float64))
    assert (s[:-1].diff() < 0).all()
    # rho = 7 spends the steps at low noise: 4 of 10 below sigma 1 (evenly spaced: none)
    assert (s[:-1] < 1).sum() == 4
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(
    "schedule,zero_snr", [("cosine", False), ("linear", False), ("cosine", True)]
)
def test_sigma_samplers_on_every_discrete_objective_and_schedule(objective, schedule, zero_snr):
    """One conversion between steps and sigmas: a network that predicts the objective exactly
    for Gaussian data (from its own alpha-bars) makes `process.denoise` the exact denoiser, and
    the samplers then end where the ODE does."""
    if objective == "eps" and zero_snr:
        pytest.skip("refused: eps at zero terminal SNR")
    p = GaussianDiffusion(schedule, 1000, objective, zero_terminal_snr=zero_snr)
    ab = alpha_bar(p)
    log_sigmas = ((1 - ab) / ab).sqrt().log()
    log_sigmas = log_sigmas[log_sigmas.isfinite()]

    class Exact(torch.nn.Module):
        def forward(self, x_t, t):
            lo = t.floor().long().clamp(max=len(log_sigmas) - 2)
            s = (log_sigmas[lo] + (t - lo) * (log_sigmas[lo + 1] - log_sigmas[lo])).exp()
            s = s.view(-1, 1, 1, 1).to(x_t.dtype)
            a, c = (1 + s**2).rsqrt(), s * (1 + s**2).rsqrt()
            x0 = gaussian_denoiser(x_t / a, s)
            eps = (x_t - a * x0) / c
            return {"eps": eps, "x0": x0, "v": a * eps - c * x0}[objective]

    x = torch.randn(6, 3, 4, 4, dtype=torch.float64)
    for sigma in (0.01, 0.7, 20.0):
        level = torch.full((6,), sigma, dtype=torch.float64)
        torch.testing.assert_close(
            p.denoise(Exact(), x, level), gaussian_denoiser(x, sigma), rtol=1e-4, atol=1e-4
        )
    z = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    sigma_max = min(80.0, p.sigma_max)
    for sampler in ("heun", "dpmpp_2m"):
        out = sample(p, Exact(), z, sampler, steps=40, clip=False)
        torch.testing.assert_close(out, ode_end(z, sigma_max).float(), rtol=0, atol=0.02)


def test_sigma_samplers_stop_between_steps_and_refuse_discrete_only_options():
    from monet.diffusion import EDMDiffusion
    from monet.errors import Interrupted

    p = GaussianDiffusion("cosine", 50, "v")
    with pytest.raises(Interrupted, match="step 1 of 5"):
        sample(p, TinyDenoiser(), torch.randn(1, 3, 4, 4), "dpmpp_2m", 5, stop=lambda: True)
    with pytest.raises(ValueError, match="'ddim' steps through a discrete schedule.*'heun'"):
        sample(EDMDiffusion(), TinyDenoiser(), torch.randn(1, 3, 4, 4), "ddim", 5)
    with pytest.raises(
        ValueError, match="sampling_steps=0 must be between 1 and the process's timesteps=50"
    ):
        sample(p, TinyDenoiser(), torch.randn(1, 3, 4, 4), "heun", 0)
