"""EDM-form training: unit variances at sigma_data, the v parametrisation where they coincide,
seeded losses, the noise label, settings, and sigma_data measured from the paintings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from support import ROOT

from monet.diffusion import EDMDiffusion, GaussianDiffusion, measure_sigma_data
from monet.errors import ConfigError


def test_network_input_and_target_have_unit_variance_at_sigma_data():
    p = EDMDiffusion(sigma_data=0.42)
    x0 = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 0.42
    for sigma in (0.01, 0.42, 3.0, 80.0):
        s = torch.tensor(sigma)
        c_skip, c_out, c_in = p.preconditioning(s)
        x = x0 + s * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        target = (x0 - c_skip * x) / c_out
        assert float((c_in * x).var()) == pytest.approx(1, abs=0.01)
        assert float(target.var()) == pytest.approx(1, abs=0.01)


class Fixed(torch.nn.Module):
    """A network that ignores its noise label."""

    def forward(self, x, t):
        return torch.tanh(x) * 0.7 + 0.1


def test_with_sigma_data_1_the_preconditioning_is_v_prediction():
    """Karras et al. with sigma_data = 1: c_in = sqrt(alpha-bar), c_out = sqrt(1 - alpha-bar),
    c_skip = alpha-bar, so D = alpha-bar x - sqrt(1 - alpha-bar) F: F is -v."""
    edm, vp = EDMDiffusion(sigma_data=1.0), GaussianDiffusion("cosine", 1000, "v")
    x = torch.randn(4, 3, 8, 8) * 5
    for sigma in (0.05, 1.0, 12.0):
        level = torch.full((4,), sigma)
        negated = lambda x_t, t: -Fixed()(x_t, t)  # noqa: E731
        torch.testing.assert_close(edm.denoise(Fixed(), x, level), vp.denoise(negated, x, level))


def test_loss_is_the_squared_error_of_f_and_seeded():
    p = EDMDiffusion(sigma_data=0.5)
    x0 = torch.rand(6, 3, 8, 8) * 2 - 1
    a = p.loss(Fixed(), x0, generator=torch.Generator().manual_seed(3))
    b = p.loss(Fixed(), x0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a > 0
    sigma, noise = torch.full((6,), 0.8), torch.randn(6, 3, 8, 8)
    s = torch.tensor(0.8)
    c_skip, c_out, c_in = p.preconditioning(s)
    x = x0 + s * noise
    by_hand = ((Fixed()(c_in * x, None) - (x0 - c_skip * x) / c_out) ** 2).mean()
    torch.testing.assert_close(p.loss(Fixed(), x0, sigma, noise), by_hand)
    # EDM's weighted loss lambda(sigma) |D - x0|² with lambda = 1 / c_out² is the same number
    d = c_skip * x + c_out * Fixed()(c_in * x, None)
    weighted = ((s**2 + 0.25) / (s * 0.5) ** 2 * (d - x0) ** 2).mean()
    torch.testing.assert_close(by_hand, weighted)


def test_noise_label_spans_the_unets_step_range():
    p = EDMDiffusion()
    labels = p.c_noise(torch.tensor([0.002, 1.0, 80.0]))
    assert labels[0] == pytest.approx(0, abs=1e-3) and labels[2] == pytest.approx(999, abs=1e-2)
    assert 0 < labels[1] < 999


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"sigma_data": 0}, "sigma_data=0"),
        ({"p_std": -1}, "p_std=-1"),
        ({"sigma_min": 1, "sigma_max": 0.5}, "sigma_min < sigma_max"),
    ],
)
def test_bad_settings_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        EDMDiffusion(**kw)


def test_measure_sigma_data_reads_uint8_and_floats_alike():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    assert measure_sigma_data(images) == pytest.approx(
        measure_sigma_data(images.float() / 127.5 - 1), abs=1e-6
    )


@pytest.mark.skipif(not os.environ.get("MONET_DATA"), reason="needs the Kaggle data (MONET_DATA)")
def test_edm_small_states_the_paintings_sigma_data():
    from monet.data import MonetDataModule

    dm = MonetDataModule(os.environ["MONET_DATA"], image_size=32)
    dm.setup("fit")
    text = Path(ROOT / "configs" / "edm_small.yaml").read_text()
    stated = float(re.search(r"sigma_data: ([0-9.]+)", text).group(1))
    assert stated == pytest.approx(measure_sigma_data(dm.real), abs=0.01)
