"""Small pieces shared by the networks (and a hardware check). Imports torch only."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from monet.errors import ConfigError


def check_image_size(name: str, image_size: int, sizes: tuple[int, ...]) -> int:
    """Fail at construction, naming the value and the sizes that work."""
    if image_size not in sizes:
        raise ConfigError(
            f"{name} cannot work at image_size={image_size}: use one of "
            f"{', '.join(map(str, sizes))} (and the same data.image_size)."
        )
    return int(math.log2(image_size))


@contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Put `net` in eval mode and give every submodule back its own mode afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for m, mode in modes:  # parents come first, so each module ends with its own mode
            m.train(mode)


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) conv weights and N(1, 0.02) norm scales (Radford et al. 2016, Sec. 4)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) on every conv and linear layer of `module`."""
    for name, child in module.named_children():
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            setattr(module, name, nn.utils.parametrizations.spectral_norm(child))
        else:
            spectral_norm_all(child)
    return module


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 units (AVX512-BF16 or AMX); unknown counts as yes.

    MONET_BF16=1 or 0 forces the answer, so tests cover both code paths on any machine.
    """
    forced = os.environ.get("MONET_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return _detect_bf16()


@functools.cache
def _detect_bf16() -> bool:
    try:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # private helpers: if they go, leave autocast alone
        return True


def emulated_bf16_autocast(x: Tensor) -> bool:
    """Whether x would go through bfloat16 CPU autocast on a CPU that only emulates bfloat16."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_has_bf16()
    )
