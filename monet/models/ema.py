"""An exponential moving average of a network's weights, defined in images, not steps.

`EMA` is the YAML's description of how the averaged copy follows the live network; `update_ema_`
takes one step of it and `standing_stats_` gives the copy BatchNorm statistics of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from monet.errors import ConfigError


@dataclass
class EMA:
    """How an averaged copy of a network follows the live one.

    Args:
        half_life: images (summed over devices and accumulation) after which an old weight's
            share of the average has halved (Karras et al. 2022, "Elucidating the design
            space", App. C: `ema_halflife_kimg`). Unlike a per-step decay, it means the same at
            any batch size and device count.
        rampup: while fewer than half_life / rampup images have been seen, the half-life is
            rampup x the images seen, so the early average forgets the random initial weights
            (Karras et al.: 0.05). null keeps the full half-life from the start.
        decay: a fixed decay per update instead of a half-life (lucidrains' ema-pytorch), with
            that library's warm-up min(decay, 1 - (1 + n)^(-2/3)) after n averaging updates.
        every: average every `every` optimizer steps (the library: 10).
        start: optimizer steps before averaging begins; until then the copy follows the live
            weights exactly (the library: 100).
        buffers: BatchNorm statistics of the copy. ``standing``: recomputed for the averaged
            weights before they sample (running averages over `standing_batches` fixed noise
            batches in train mode); ``average``: the live statistics averaged like the weights;
            ``copy``: the live statistics as they are (they belong to other weights).
        standing_batches: noise batches for ``standing`` statistics.
    """

    half_life: float | None = 10_000
    rampup: float | None = 0.05
    decay: float | None = None
    every: int = 1
    start: int = 0
    buffers: Literal["standing", "average", "copy"] = "average"
    standing_batches: int = 8

    def __post_init__(self) -> None:
        if (self.half_life is None) == (self.decay is None):
            raise ConfigError(
                f"model ema: give exactly one of half_life (images) and decay (per update); got "
                f"half_life={self.half_life}, decay={self.decay}."
            )
        if self.half_life is not None and self.half_life <= 0:
            raise ConfigError(f"model ema.half_life={self.half_life} must be > 0 (images).")
        if self.decay is not None and not 0 < self.decay < 1:
            raise ConfigError(f"model ema.decay={self.decay} must lie in (0, 1), e.g. 0.995.")
        if self.rampup is not None and self.rampup <= 0:
            raise ConfigError(f"model ema.rampup={self.rampup} must be > 0, or null for none.")
        if self.every < 1 or self.start < 0 or self.standing_batches < 1:
            raise ConfigError(
                f"model ema: every={self.every} and standing_batches={self.standing_batches} "
                f"must be >= 1, start={self.start} >= 0."
            )
        if self.buffers not in ("standing", "average", "copy"):
            raise ConfigError(f"model ema.buffers={self.buffers!r}: use standing, average or copy.")

    def beta(self, step: int, images_per_step: int) -> float | None:
        """The weight the average keeps at optimizer `step` (1-based), or None to skip it.

        0 copies the live weights (until `start`); `images_per_step` is the global batch.
        """
        if step <= self.start:
            return 0.0
        if (step - self.start) % self.every:
            return None
        if self.decay is not None:
            updates = (step - self.start) // self.every
            return min(self.decay, 1 - (1 + updates) ** (-2 / 3))
        half_life = self.half_life
        if self.rampup is not None:
            half_life = min(half_life, step * images_per_step * self.rampup)
        return 0.5 ** (images_per_step * self.every / max(half_life, 1e-8))


@torch.no_grad()
def update_ema_(ema: nn.Module, live: nn.Module, beta: float, buffers: str = "average") -> None:
    """ema <- beta * ema + (1 - beta) * live, weights and (with ``average``) float buffers.

    Integer buffers (BatchNorm's batch counter) are copied; with ``standing`` the buffers are
    left alone (they are recomputed before sampling), with ``copy`` the live ones are copied.
    """
    torch._foreach_lerp_(list(ema.parameters()), list(live.parameters()), 1.0 - beta)
    for ema_buf, buf in zip(ema.buffers(), live.buffers()):
        if buffers == "average" and ema_buf.is_floating_point():
            ema_buf.lerp_(buf, 1.0 - beta)
        elif buffers != "standing" or beta == 0.0:
            ema_buf.copy_(buf)


def step_ema_(ema: nn.Module, live: nn.Module, config: EMA, step: int, images: int) -> None:
    """Optimizer step `step` of `config`'s clock, `images` per step (summed over devices)."""
    beta = config.beta(step, images)
    if beta is not None:
        update_ema_(ema, live, beta, config.buffers)


def batch_norms(net: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of `net` that keep running statistics."""
    return [m for m in net.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def has_batch_stats(net: nn.Module) -> bool:
    return bool(batch_norms(net))


@torch.no_grad()
def standing_stats_(
    net: nn.Module, inputs: Callable[[torch.Generator], torch.Tensor], batches: int
) -> None:
    """Recompute every BatchNorm's running statistics of `net` for its own weights.

    Runs `batches` batches from `inputs(generator)` through `net` in train mode with cumulative
    averaging (momentum None), from a fixed seed: the same weights always get the same
    statistics, on every rank and whatever the sampling batch size. Only buffers change.
    """
    norms = batch_norms(net)
    if not norms:
        return
    modes = {m: m.training for m in net.modules()}
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    gen = torch.Generator().manual_seed(0)
    try:
        for _ in range(batches):
            net(inputs(gen))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
