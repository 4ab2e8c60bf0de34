"""The Gaussian process against closed forms and oracle denoisers: buffers, the posterior,
q_sample, the loss of every objective with its weightings, zero terminal SNR, model
predictions and clipping, and its options."""

from __future__ import annotations

import math

import pytest
import torch
from support import OBJECTIVES, TinyDenoiser, alpha_bar, oracle
from torch import nn

from monet.diffusion import GaussianDiffusion, make_betas, sample
from monet.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_buffers_are_float32_and_not_checkpointed():
    p = GaussianDiffusion("cosine", 100)
    assert p.state_dict() == {}
    assert all(b.dtype == torch.float32 for b in p.buffers())
    assert p.posterior_variance[0] == 0 and torch.isfinite(p.posterior_log_variance_clipped).all()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_posterior_is_the_gaussian_conditional(schedule):
    # x_{t-1} = sqrt(ab') x0 + sqrt(1-ab') e1 and x_t = sqrt(a_t) x_{t-1} + sqrt(b_t) e2 given x0:
    # regress x_{t-1} on x_t. A different route to Ho et al.'s Eq. 7.
    p = GaussianDiffusion(schedule, 200)
    betas = make_betas(schedule, 200)
    ab = torch.cumprod(1 - betas, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    t = torch.tensor([0, 1, 50, 199])
    cov = (1 - betas).sqrt() * (1 - ab_prev)  # Cov(x_{t-1}, x_t | x0)
    gain = cov / (1 - ab)
    var = (1 - ab_prev) - gain * cov
    x0, x_t = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    mean, v, log_v = p.posterior(x0, x_t, t)
    expected = ab_prev[t].sqrt().view(-1, 1, 1, 1) * x0 + gain[t].view(-1, 1, 1, 1) * (
        x_t - ab[t].sqrt().view(-1, 1, 1, 1) * x0
    )
    torch.testing.assert_close(mean, expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v.flatten(), var[t].float(), rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(log_v.flatten()[1:], var[t[1:]].log().float(), rtol=1e-5, atol=1e-5)


def test_q_sample_statistics():
    p = GaussianDiffusion("linear", 1000)
    torch.manual_seed(0)
    n, value = 20_000, 0.7
    for step in (0, 100, 500, 999):
        x0 = torch.full((n, 1, 1, 1), value)
        x_t = p.q_sample(x0, torch.full((n,), step)).flatten().double()
        ab = alpha_bar(p)[step].item()
        sd = math.sqrt(1 - ab)
        assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * value, abs=5 * sd / math.sqrt(n))
        assert x_t.std().item() == pytest.approx(sd, rel=0.03)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_loss_is_zero_for_the_oracle_and_positive_otherwise(objective, loss, gamma):
    p = GaussianDiffusion("cosine", 100, objective, loss, gamma)
    torch.manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8) * 2 - 1
    t = torch.tensor([0, 1, 10, 50, 98, 99])
    good = p.loss(oracle(p, x0), x0, t)
    assert good.ndim == 0 and torch.isfinite(good) and good.item() < 1e-5
    wrong = GaussianDiffusion("cosine", 100, "x0" if objective != "x0" else "eps")
    bad = p.loss(oracle(wrong, x0), x0)  # the right denoiser for another objective
    assert torch.isfinite(bad) and bad.item() > 1e-2


def test_loss_draws_t_uniformly_from_all_steps():
    p = GaussianDiffusion("linear", 4)
    seen = []

    class Recorder(nn.Module):
        def forward(self, x, t):
            seen.append(t)
            return torch.zeros_like(x)

    torch.manual_seed(0)
    p.loss(Recorder(), torch.zeros(4000, 1, 1, 1))
    counts = torch.bincount(seen[0], minlength=4)
    assert counts.shape == (4,) and (counts > 900).all()


def test_min_snr_weights_per_objective():
    # Hang et al. 2023: with L2, the weighted loss of every objective is min(SNR, gamma) times the
    # x0 error, for the same x0 estimate. Check it with one fixed wrong x0 estimate.
    gamma, T = 5.0, 100
    torch.manual_seed(0)
    x0 = torch.rand(5, 3, 4, 4) * 2 - 1
    x0_hat = x0 + 0.1 * torch.randn_like(x0)
    t, noise = torch.tensor([0, 5, 30, 60, 99]), torch.randn_like(x0)
    ab = torch.cumprod(1 - make_betas("linear", T), 0)[t].view(-1, 1, 1, 1).float()
    a, s = ab.sqrt(), (1 - ab).sqrt()
    x_t = a * x0 + s * noise
    eps_hat = (x_t - a * x0_hat) / s
    outputs = {"eps": eps_hat, "x0": x0_hat, "v": a * eps_hat - s * x0_hat}
    snr = (ab / (1 - ab)).flatten()
    per_sample = (x0_hat - x0).square().flatten(1).mean(1)
    expected = (snr.clamp(max=gamma) * per_sample).mean()
    for objective, out in outputs.items():
        p = GaussianDiffusion("linear", T, objective, "l2", min_snr_gamma=gamma)

        class Fixed(nn.Module):
            def forward(self, x, t, out=out):
                return out

        got = p.loss(Fixed(), x0, t, noise)
        assert got.item() == pytest.approx(expected.item(), rel=1e-4), objective
    # The weight clips only where SNR > gamma: at t = 0 for eps it is gamma / SNR < 1.
    p = GaussianDiffusion("linear", T, "eps", min_snr_gamma=gamma)
    assert p.loss_weight[0] < 0.01 and p.loss_weight[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_eps_equivalent_weight_makes_every_loss_the_eps_loss(objective, loss):
    # For a fixed wrong x0 estimate, the weighted loss of every objective is the eps loss of the
    # same estimate; with L2 the weights are lucidrains' 1, SNR and SNR / (SNR + 1).
    T = 100
    torch.manual_seed(0)
    x0 = torch.rand(5, 3, 4, 4) * 2 - 1
    x0_hat = x0 + 0.1 * torch.randn_like(x0)
    t, noise = torch.tensor([0, 5, 30, 60, 99]), torch.randn_like(x0)
    ab = torch.cumprod(1 - make_betas("cosine", T), 0)
    a, s = (v[t].view(-1, 1, 1, 1).float() for v in (ab.sqrt(), (1 - ab).sqrt()))
    x_t = a * x0 + s * noise
    eps_hat = (x_t - a * x0_hat) / s
    out = {"eps": eps_hat, "x0": x0_hat, "v": a * eps_hat - s * x0_hat}[objective]
    err = (eps_hat - noise).abs() if loss == "l1" else (eps_hat - noise).square()
    expected = err.flatten(1).mean(1).mean()

    class Fixed(nn.Module):
        def forward(self, x, t):
            return out

    p = GaussianDiffusion("cosine", T, objective, loss, loss_weight="eps_equivalent")
    assert p.loss(Fixed(), x0, t, noise).item() == pytest.approx(expected.item(), rel=1e-4)
    snr = ab / (1 - ab)
    library = {"eps": torch.ones_like(snr), "x0": snr, "v": snr / (snr + 1)}[objective]
    closed = library if loss == "l2" else library.sqrt()
    torch.testing.assert_close(p.loss_weight, closed.float(), rtol=1e-5, atol=0)
    assert (GaussianDiffusion("cosine", T, objective, loss).loss_weight == 1).all()


@pytest.mark.parametrize("objective", ["x0", "v"])
def test_zero_terminal_snr_stays_finite(objective):
    T = 50
    p = GaussianDiffusion("linear", T, objective, "l2", zero_terminal_snr=True)
    assert p.alphas_cumprod[-1] == 0 and p.snr[-1] == 0 and p.betas[-1] == 1
    eps_only = {"sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod"}  # inf at T
    for name, buffer in p.named_buffers():
        assert name in eps_only or torch.isfinite(buffer).all(), name
    torch.manual_seed(0)
    x0 = torch.rand(3, 3, 8, 8) * 1.8 - 0.9
    t = torch.tensor([0, T // 2, T - 1])
    assert p.loss(oracle(p, x0), x0, t).item() < 1e-5
    net, x_T = TinyDenoiser(), torch.randn_like(x0)
    assert torch.isfinite(p.loss(net, x0, t))
    for kwargs in ({"min_snr_gamma": 5.0}, {"loss_weight": "eps_equivalent"}):
        w = GaussianDiffusion("linear", T, objective, zero_terminal_snr=True, **kwargs).loss_weight
        assert torch.isfinite(w).all() and w[-1] == 0  # SNR = 0 at T
    x0_hat, eps_hat = p.model_predictions(net, x_T, t.new_full((3,), T - 1))
    torch.testing.assert_close(eps_hat, x_T)  # pure noise at T: eps is x_T itself
    assert torch.isfinite(x0_hat).all()
    for sampler, steps, eta in [("ddpm", None, 0.0), ("ddim", 10, 0.0), ("ddim", 1, 1.0)]:
        torch.testing.assert_close(
            sample(p, oracle(p, x0), x_T, sampler, steps, eta), x0, rtol=0, atol=1e-5
        )
        assert torch.isfinite(sample(p, net, x_T, sampler, steps, eta)).all()


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_model_predictions_convert_every_objective(objective):
    p = GaussianDiffusion("linear", 100, objective)
    torch.manual_seed(0)
    x0, noise = torch.rand(4, 3, 4, 4) * 1.8 - 0.9, torch.randn(4, 3, 4, 4)
    t = torch.tensor([0, 20, 70, 99])
    x_t = p.q_sample(x0, t, noise)
    x0_hat, eps_hat = p.model_predictions(oracle(p, x0), x_t, t, clip=False)
    # x0 from eps divides float32 rounding by sqrt(alpha-bar_T) = 0.005 at t = T - 1.
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-4 if objective == "eps" else 2e-5)
    torch.testing.assert_close(eps_hat, noise, rtol=0, atol=2e-4)


def test_clipping_keeps_the_pair_consistent():
    p = GaussianDiffusion("linear", 100, "x0")
    x_t, t = torch.randn(2, 3, 4, 4), torch.tensor([10, 90])

    class TooBright(nn.Module):
        def forward(self, x, t):
            return torch.full_like(x, 3.0)

    x0_hat, eps_hat = p.model_predictions(TooBright(), x_t, t, clip=True)
    assert x0_hat.max() == 1.0
    ab = alpha_bar(p)[t].view(-1, 1, 1, 1).float()
    torch.testing.assert_close(ab.sqrt() * x0_hat + (1 - ab).sqrt() * eps_hat, x_t)


def test_process_options_are_validated():
    with pytest.raises(ValueError, match="objective 'noise'.*'eps', 'x0', 'v'"):
        GaussianDiffusion(objective="noise")
    with pytest.raises(ValueError, match="loss 'huber'.*'l1' or 'l2'"):
        GaussianDiffusion(loss="huber")
    with pytest.raises(ValueError, match="min_snr_gamma=0"):
        GaussianDiffusion(min_snr_gamma=0)
    with pytest.raises(ConfigError, match="loss_weight 'snr'.*'uniform' or 'eps_equivalent'"):
        GaussianDiffusion(loss_weight="snr")
    with pytest.raises(ConfigError, match="zero_terminal_snr.*'eps'.*objective: v"):
        GaussianDiffusion(objective="eps", zero_terminal_snr=True)
    with pytest.raises(ConfigError, match="schedule 'quadratic'"):
        GaussianDiffusion(schedule="quadratic")
