"""Every use of a library's private (or unpublished) interface, in one place.

Each has no public route in the versions pinned in pyproject.toml, and tests/runtime/test_compat.py
has a test per use that fails when the library changes it. Everything else in the package uses
public APIs only.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode  # documented, not exported elsewhere

__all__ = [
    "LOCAL_SCALAR_DENSE",
    "TorchDispatchMode",
    "cpu_bf16_units",
    "drop_wandb_anonymous",
    "forget_skip",
    "skip_step_if",
]

# The aten op behind `.item()`, `bool(tensor)` and `float(tensor)`: a read back to the host.
LOCAL_SCALAR_DENSE = torch.ops.aten._local_scalar_dense.default


@functools.cache
def cpu_bf16_units() -> bool:
    """Whether this CPU has bfloat16 units (AVX512-BF16 or AMX); unknown counts as yes.

    torch publishes no such check (`torch.backends.cpu.get_cpu_capability()` names the vector
    width only); its private helpers answer it on x86 and are absent or false elsewhere.
    """
    try:
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # if they go, leave autocast alone
        return True


def skip_step_if(optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> None:
    """Make the next `step()` of a fused Adam, AdamW or SGD skip its update (weights, moments
    and step counts) where `bad` (a 0-d float tensor, 1.0 or 0.0) is 1, on the device.

    This is the `found_inf` attribute GradScaler hands fused optimizers (torch.amp); torch has
    no public way to skip a step without reading `bad` back to the host.
    """
    optimizer.found_inf = bad


def forget_skip(optimizer: Any, *_: Any) -> None:
    """Remove `skip_step_if`'s flag after the step (a step post-hook; GradScaler may have
    taken it already)."""
    optimizer.__dict__.pop("found_inf", None)


def drop_wandb_anonymous(logger: Any) -> None:
    """Lightning's WandbLogger passes `anonymous=None` to `wandb.init`, for which W&B warns that
    the setting has no effect: nothing a user can act on. Lightning keeps the arguments in
    `_wandb_init` and offers no other way to leave one out."""
    logger._wandb_init.pop("anonymous", None)
