"""Schedules, the Gaussian process and the samplers, against closed forms and oracle denoisers."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from support import CONFIGS
from torch import nn

from monet.diffusion import (
    GaussianDiffusion,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    linear_betas,
    make_betas,
    rescale_zero_terminal_snr,
    sample,
    sigmoid_betas,
)
from monet.errors import ConfigError

OBJECTIVES = ("eps", "x0", "v")


pytestmark = pytest.mark.usefixtures("one_thread")


# -- schedules ---------------------------------------------------------------------------------


def test_linear_endpoints_and_spacing():
    betas = linear_betas(1000)  # at T = 1000 the 1000 / T scale is 1: Ho et al.'s schedule
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15)
    assert betas[-1].item() == pytest.approx(0.02, abs=1e-15)
    steps = betas.diff()
    torch.testing.assert_close(
        steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-9, atol=0
    )


def test_linear_betas_scale_by_1000_over_T_and_reach_noise():
    # improved-diffusion's rule: endpoints times 1000 / T, so alpha-bar_T is ~4e-5 at any T.
    betas = linear_betas(300)
    assert betas[0].item() == pytest.approx(1e-4 * 1000 / 300, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02 * 1000 / 300, rel=1e-12)
    assert torch.cumprod(1 - betas, 0)[-1] < 1e-4
    # The report's unscaled schedule is still there, and at T = 300 it does not reach noise.
    unscaled = make_betas("linear_unscaled", 300)
    torch.testing.assert_close(unscaled, linear_betas(300, scale=False))
    assert unscaled[-1].item() == pytest.approx(0.02) and torch.cumprod(1 - unscaled, 0)[-1] > 0.04
    assert linear_betas(10).max() == 0.999  # scaled past 1 below T = 20: clipped


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid", "linear_unscaled"])
def test_zero_terminal_snr_rescaling_is_lin_et_al_algorithm_1(name):
    betas = make_betas(name, 300)
    rescaled = rescale_zero_terminal_snr(betas)
    assert rescaled.dtype == torch.float64 and rescaled[-1] == 1
    assert (rescaled > 0).all() and (rescaled <= 1).all()
    root, new_root = (torch.cumprod(1 - b, 0).sqrt() for b in (betas, rescaled))
    # sqrt(alpha-bar) shifted to end at 0 and scaled to keep its first value.
    expected = (root - root[-1]) * root[0] / (root[0] - root[-1])
    torch.testing.assert_close(new_root, expected, rtol=1e-10, atol=1e-12)
    assert new_root[0].item() == pytest.approx(root[0].item(), rel=1e-12) and new_root[-1] == 0


def model_of(config) -> dict:
    return yaml.safe_load(config.read_text())["model"]


DIFFUSION_CONFIGS = [c for c in CONFIGS if model_of(c)["class_path"] == "monet.models.Diffusion"]


@pytest.mark.parametrize("config", DIFFUSION_CONFIGS, ids=[c.stem for c in DIFFUSION_CONFIGS])
def test_every_diffusion_config_reaches_noise(config):
    # Sampling starts from pure noise: the last training step must be noise too (alpha-bar_T).
    process_args = model_of(config)["init_args"]["process"].get("init_args", {})
    process = GaussianDiffusion(**process_args)
    assert process.alphas_cumprod64[-1] < 1e-3, f"{config.name}: alpha-bar_T too large"


def test_cosine_alpha_bar_is_f_ratio_where_unclipped():
    T, s = 1000, 0.008
    betas = cosine_betas(T, s=s)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    expected = (f / f[0])[1:]  # alpha-bar_1 .. alpha-bar_T
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    clipped = betas >= 0.999
    assert clipped.any() and clipped[-1]  # f(T) = 0 forces the last beta to the cap
    first_clipped = int(clipped.nonzero()[0])
    torch.testing.assert_close(
        alphas_cumprod[:first_clipped], expected[:first_clipped], rtol=1e-10, atol=1e-12
    )
    # The paper's schedule starts far below the linear one's 1e-4 (the report clips it there).
    assert betas[0] < 1e-4


def test_sigmoid_alpha_bar_matches_chen_2023():
    T, start, end, tau = 500, -3.0, 3.0, 1.0
    betas = sigmoid_betas(T, start, end, tau)
    t = torch.linspace(0, 1, T + 1, dtype=torch.float64)[1:]
    v_start, v_end = (torch.tensor(v / tau, dtype=torch.float64).sigmoid() for v in (start, end))
    gamma = (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(alphas_cumprod[:-1], gamma[:-1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [10, 1000])
def test_betas_are_valid(name, T):
    betas = make_betas(name, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert (betas > 0).all() and (betas <= 0.999).all()
    assert (torch.cumprod(1 - betas, 0).diff() < 0).all()  # noise only ever grows


def test_make_betas_names_the_bad_schedule_and_the_good_ones():
    with pytest.raises(ValueError, match=r"'cosin'.*'linear', 'cosine', 'sigmoid'"):
        make_betas("cosin", 1000)
    with pytest.raises(ValueError, match=r"timesteps=0"):
        make_betas("linear", 0)


# -- the process ---------------------------------------------------------------------------------


def alpha_bar(process: GaussianDiffusion) -> torch.Tensor:
    """alpha-bar computed here from the schedule, independently of the process's buffers."""
    betas = make_betas(process.schedule, process.timesteps)
    if process.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return torch.cumprod(1 - betas, 0)


def oracle(process: GaussianDiffusion, x0: torch.Tensor) -> nn.Module:
    """A denoiser that knows x0 and returns the exact target of `process.objective` at x_t."""

    class Oracle(nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ab = alpha_bar(process)[t].view(-1, 1, 1, 1)
            a, s = ab.sqrt(), (1 - ab).sqrt()
            eps = (x_t.double() - a * x0.double()) / s
            out = {"eps": eps, "x0": x0.double(), "v": a * eps - s * x0.double()}
            return out[process.objective].to(x_t.dtype)

    return Oracle()


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


# -- samplers ------------------------------------------------------------------------------------


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


class TinyDenoiser(nn.Module):
    """A fixed, time-dependent, non-oracle network."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.modes: list[bool] = []

    def forward(self, x, t):
        self.modes.append(self.training)
        return torch.tanh(self.bn(self.conv(x))) * (1 + t.view(-1, 1, 1, 1) / 100)


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
