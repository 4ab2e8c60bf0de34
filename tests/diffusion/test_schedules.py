"""Noise schedules against closed forms: linear (scaled by 1000 / T), cosine, sigmoid, the zero
terminal SNR rescaling; every diffusion config reaches noise."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from support import CONFIGS

from monet.diffusion import (
    EDMDiffusion,
    GaussianDiffusion,
    cosine_betas,
    linear_betas,
    make_betas,
    rescale_zero_terminal_snr,
    sigmoid_betas,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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
    # Sampling starts from pure noise: the last training step must be noise too (alpha-bar_T);
    # in EDM form, the largest sigma trained and sampled dwarfs the data's std.
    process = model_of(config)["init_args"]["process"]
    if process["class_path"] == "monet.diffusion.EDMDiffusion":
        edm = EDMDiffusion(**process.get("init_args", {}))
        assert edm.sigma_max / edm.sigma_data > 100, f"{config.name}: sigma_max too small"
        return
    process = GaussianDiffusion(**process.get("init_args", {}))
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
