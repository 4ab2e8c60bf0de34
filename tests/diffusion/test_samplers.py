"""The DDPM and DDIM samplers: an oracle denoiser's samples are x0, DDIM with every step and
eta = 1 is DDPM, the DDIM timesteps, module modes restored, batching, options."""

from __future__ import annotations

import pytest
import torch
from support import OBJECTIVES, TinyDenoiser, oracle

from monet.diffusion import GaussianDiffusion, ddim_sample, ddim_timesteps, ddpm_sample, sample

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
