"""Small pieces shared by the networks (and a hardware check). Imports torch, monet.errors and
monet.runtime.compat only."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from monet.errors import ConfigError
from monet.runtime.compat import cpu_bf16_units


def check_image_size(
    name: str,
    image_size: int,
    *,
    sizes: tuple[int, ...] | None = None,
    multiple_of: int = 1,
    at_least: int = 1,
    key: str = "image_size",
) -> None:
    """The one image-size rule: fail at construction with one line naming the key and the fix.

    `sizes`: the only sides a network built stage by stage produces. Otherwise any multiple of
    `multiple_of` (2**k for a network that halves the image k times) of at least `at_least`.
    A network's message (`key` "image_size") adds that data.image_size must agree.
    """
    whole = isinstance(image_size, int) and not isinstance(image_size, bool)
    if sizes is not None:
        if whole and image_size in sizes:
            return
        fix = f"use one of {', '.join(map(str, sizes))}"
    else:
        low = max(at_least, multiple_of)
        if whole and image_size >= low and image_size % multiple_of == 0:
            return
        examples = [s for s in (32, 64, 128, 256) if s >= low and s % multiple_of == 0]
        examples = examples or [-(-low // multiple_of) * multiple_of]
        halvings = int(math.log2(multiple_of)) if multiple_of > 1 else 0
        if 2**halvings == multiple_of and halvings:
            fix = f"it halves the image {halvings} times, so use a multiple of {multiple_of}"
        elif multiple_of > 1:
            fix = f"use a multiple of {multiple_of}"
        else:
            fix = "use a side"
        if at_least > multiple_of:
            fix += f" that is at least {at_least},"
        fix += f" such as {', '.join(map(str, examples))}"
    same = " (and the same data.image_size)" if key == "image_size" else ""
    raise ConfigError(f"{name} cannot work at {key}={image_size}: {fix}{same}.")


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
    return cpu_bf16_units()


def emulated_bf16_autocast(x: Tensor) -> bool:
    """Whether x would go through bfloat16 CPU autocast on a CPU that only emulates bfloat16."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and not cpu_has_bf16()
    )
