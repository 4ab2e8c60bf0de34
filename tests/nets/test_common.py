"""What the networks share (monet.nets.common): one image-size rule that names the key and the
fix in one line, and spectral normalisation of every layer."""

from __future__ import annotations

import pytest
import torch
from support import tiny_gan

from monet.data import MonetDataModule
from monet.errors import ConfigError
from monet.nets import LibUnet, ResnetGenerator, SimpleUnet, WGANGenerator
from monet.nets.common import check_image_size, spectral_norm_all


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: WGANGenerator(image_size=48), r"WGANGenerator .* image_size=48: use one of 32"),
        (
            lambda: SimpleUnet(image_size=40),
            r"SimpleUnet .* image_size=40: it halves the image 4 times, so use a multiple of 16 ",
        ),
        (lambda: LibUnet(image_size=12.0), r"LibUnet .* image_size=12.0: .* multiple of 8 "),
        (lambda: ResnetGenerator(image_size=30), r"image_size=30: .* multiple of 4 that is at le"),
        (lambda: MonetDataModule(image_size=4), r"data.image_size=4: use a side that is at le"),
    ],
)
def test_one_image_size_rule_names_the_key_and_the_fix(build, message):
    """Every network and the data module check the side with `check_image_size`: one line."""
    with pytest.raises(ConfigError, match=message) as err:
        build()
    assert "\n" not in str(err.value) and str(err.value).endswith(".")
    assert ("and the same data.image_size" in str(err.value)) != ("data.image" in message)


def test_check_image_size_accepts_what_it_names():
    check_image_size("x", 48, multiple_of=16)
    check_image_size("x", 36, multiple_of=4, at_least=32)
    check_image_size("x", 64, sizes=(32, 64))
    with pytest.raises(ConfigError, match="such as 1024"):
        check_image_size("x", 512, multiple_of=1024)
    with pytest.raises(ConfigError):
        check_image_size("x", True, multiple_of=1)


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 16)
    layer.weight.data *= 10
    wrapped = spectral_norm_all(torch.nn.Sequential(layer))[0]
    for _ in range(30):  # power iterations run in training-mode forward passes
        wrapped(torch.randn(2, 32))
    sigma = torch.linalg.matrix_norm(wrapped.weight.detach(), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.02)
    assert torch.linalg.matrix_norm(wrapped.parametrizations.weight.original, ord=2) > 5
    critic = tiny_gan(spectral_norm=True).critic
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
