"""An exponential moving average of a network's weights, defined in images, not steps.

`EMA` is the YAML's description of how the averaged copy follows the live network;
`AveragedNetwork` is the copy itself. Every family holds one under the name `ema` (None when
the YAML turns it off), with its clock (optimizer steps and images seen, saved in its state
dict), its settings and its BatchNorm handling.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn, update_bn

from monet.errors import ConfigError
from monet.runtime import seeding


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
        lengths: more half-lives (images) averaged beside `half_life` during training, so the
            averaging length can be chosen after it (EDM2's post-hoc EMA, as a set of kept
            lengths): each is one more copy of the network.
        use: the kept half-life that samples (grids, metrics, `predict`); null: `half_life`.
            Set it on the command line to sample a finished run with another length.
    """

    half_life: float | None = 10_000
    rampup: float | None = 0.05
    decay: float | None = None
    every: int = 1
    start: int = 0
    buffers: Literal["standing", "average", "copy"] = "average"
    standing_batches: int = 8
    lengths: list[float] = dataclasses.field(default_factory=list)
    use: float | None = None

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
        if (self.lengths or self.use is not None) and self.half_life is None:
            raise ConfigError(
                "model ema.lengths and ema.use are half-lives in images: give half_life, not decay."
            )
        if any(length <= 0 for length in self.lengths):
            raise ConfigError(f"model ema.lengths={self.lengths} must be > 0 (images).")
        if self.use is not None and self.use not in self.kept:
            raise ConfigError(
                f"model ema.use={self.use:g} is not a kept averaging length: use one of "
                f"{', '.join(f'{h:g}' for h in self.kept)} (ema.half_life and ema.lengths)."
            )

    @property
    def kept(self) -> list[float]:
        """Every averaged half-life: `half_life` first, then `lengths`."""
        return [self.half_life, *self.lengths] if self.half_life is not None else []

    def beta(
        self,
        step: int,
        images_per_step: int,
        seen: int | None = None,
        half_life: float | None = None,
    ) -> float | None:
        """The weight the average keeps at optimizer `step` (1-based), or None to skip it.

        0 copies the live weights (until `start`); `images_per_step` is the global batch and
        `seen` the images up to and including this step (default: `step` such batches);
        `half_life` one of the kept lengths (default: `self.half_life`).
        """
        if step <= self.start:
            return 0.0
        if (step - self.start) % self.every:
            return None
        if self.decay is not None:
            updates = (step - self.start) // self.every
            return min(self.decay, 1 - (1 + updates) ** (-2 / 3))
        half_life = half_life or self.half_life
        if self.rampup is not None:
            seen = step * images_per_step if seen is None else seen
            half_life = min(half_life, seen * self.rampup)
        return 0.5 ** (images_per_step * self.every / max(half_life, 1e-8))


@torch.no_grad()
def update_ema_(ema: nn.Module, live: nn.Module, beta: float, buffers: str = "average") -> None:
    """ema <- beta * ema + (1 - beta) * live, weights and (with ``average``) float buffers.

    Integer buffers (BatchNorm's batch counter) are copied; with ``standing`` the buffers are
    left alone (they are recomputed before sampling), with ``copy`` the live ones are copied.
    """
    params = list(ema.parameters())
    if params:  # one foreach lerp over all the weights
        get_ema_multi_avg_fn(beta)(params, list(live.parameters()), None)
    for ema_buf, buf in zip(ema.buffers(), live.buffers()):
        if buffers == "average" and ema_buf.is_floating_point():
            ema_buf.lerp_(buf, 1.0 - beta)
        elif buffers != "standing" or beta == 0.0:
            ema_buf.copy_(buf)


class AveragedNetwork(nn.Module):
    """The EMA copy of a network that samples, with its clock and BatchNorm handling.

    `update(live, images)` takes one optimizer step of the average (`images`: the global batch
    of that step), of `net` and of each copy in `kept` (one per extra length of the settings);
    `selected` is the copy that samples (`settings.use`). `refresh(inputs)` gives that copy
    standing BatchNorm statistics for its current weights when the settings ask for them (and
    does nothing when they are current); callers say when, before they sample. Reading `net`
    has no side effects. The clock is saved with the weights (``ema._extra_state``), so a
    resumed run averages on as before.

    Args:
        live: the network to average; the copy starts equal to it and never trains.
        settings: the YAML's `ema` block.
        standing: whether the family can feed noise batches for ``standing`` statistics
            (a generator's inputs); other families are refused here, in one place.
    """

    def __init__(self, live: nn.Module, settings: EMA, standing: bool = False) -> None:
        super().__init__()
        if settings.buffers == "standing" and not standing:
            raise ConfigError(
                "model ema.buffers=standing recomputes BatchNorm statistics from noise batches, "
                "which only a noise-to-image generator takes: use ema.buffers=average."
            )
        self.settings = settings
        self.net = copy.deepcopy(live).requires_grad_(False)
        # one more copy per extra half-life, keyed by it ("5000", "2500_5")
        self.kept = nn.ModuleDict(
            {length_key(h): copy.deepcopy(self.net) for h in settings.lengths}
        )
        self.steps = 0  # optimizer steps averaged
        self.images: int | None = 0  # images seen (None: a checkpoint that counted steps only)
        self._standing_at: int | None = None  # the `steps` standing statistics belong to

    @property
    def selected(self) -> nn.Module:
        """The copy that samples: the one of `settings.use`, else `net` (`half_life`)."""
        use = self.settings.use
        return self.net if use in (None, self.settings.half_life) else self.kept[length_key(use)]

    def copies(self) -> list[tuple[float | None, nn.Module]]:
        """(half-life, copy) for every averaged copy: `net` first (None under `decay`)."""
        first = [(self.settings.half_life, self.net)]
        return first + [(h, self.kept[length_key(h)]) for h in self.settings.lengths]

    @torch.no_grad()
    def update(self, live: nn.Module, images: int) -> None:
        """One optimizer step of the average; `images`: that step's global batch."""
        if self.images is None:  # as such checkpoints counted: steps x today's batch
            self.images = self.steps * images
        self.steps += 1
        self.images += images
        for half_life, net in self.copies():
            beta = self.settings.beta(self.steps, images, self.images, half_life)
            if beta is not None:
                update_ema_(net, live, beta, self.settings.buffers)

    def refresh(self, inputs: Callable[[torch.Generator], torch.Tensor]) -> None:
        """Standing BatchNorm statistics for the current weights, when the settings ask."""
        if self.settings.buffers == "standing" and self._standing_at != self.steps:
            standing_stats_(self.selected, inputs, self.settings.standing_batches)
            self._standing_at = self.steps

    def fill_kept(self, state: dict[str, Any], prefix: str = "ema.") -> None:
        """A checkpoint written without some of today's kept lengths (before `ema.lengths`, or
        with others): each missing copy starts as the checkpoint's averaged weights."""
        net = {
            k[len(prefix + "net.") :]: v for k, v in state.items() if k.startswith(prefix + "net.")
        }
        for half_life in self.settings.lengths:
            key = f"{prefix}kept.{length_key(half_life)}."
            if net and not any(k.startswith(key) for k in state):
                state.update({key + name: value.clone() for name, value in net.items()})

    def get_extra_state(self) -> dict[str, int | None]:
        return {"steps": self.steps, "images": self.images}

    def set_extra_state(self, state: dict[str, int | None]) -> None:
        self.steps, self.images = state["steps"], state["images"]
        self._standing_at = None


def length_key(half_life: float) -> str:
    """A half-life as a module name: 5000 -> "5000", 2500.5 -> "2500_5"."""
    return f"{half_life:g}".replace(".", "_")


def upgrade_checkpoint(checkpoint: dict[str, Any], averaged: str) -> None:
    """Rewrite in place a checkpoint written before `AveragedNetwork` into today's keys.

    Then the copy was `generator_ema.*` (adversarial families) or `ema.*` (diffusion) and its
    clock the counter `ema_updates`; now it is `ema.net.*` with the clock in
    `ema._extra_state`. The adversarial families counted generator steps in `ema_updates`
    with the EMA off too: `generator_steps` now. `averaged` names the network the EMA follows.
    """
    counters = checkpoint.get("counters", {})
    if "ema_updates" not in counters:
        return
    steps = counters.pop("ema_updates")
    old = "ema."
    if averaged == "generator":
        counters["generator_steps"] = steps
        old = "generator_ema."
    state = checkpoint.get("state_dict", {})
    keys = [k for k in state if k.startswith(old)]
    for key in keys:
        state["ema.net." + key[len(old) :]] = state.pop(key)
    if keys:
        state["ema._extra_state"] = {"steps": steps, "images": None}


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # lazy ones too


def batch_norms(net: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of `net` that keep running statistics."""
    return [m for m in net.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


def has_batch_stats(net: nn.Module) -> bool:
    return bool(batch_norms(net))


@torch.no_grad()
def standing_stats_(
    net: nn.Module, inputs: Callable[[torch.Generator], torch.Tensor], batches: int
) -> None:
    """Recompute every BatchNorm's running statistics of `net` for its own weights.

    torch's `update_bn` does the pass (reset, cumulative averaging with momentum None, train
    mode, the momenta put back); its "loader" here is `batches` noise batches of
    `inputs(generator)` drawn from a fixed seed, so the same weights always get the same
    statistics, on every rank and whatever the sampling batch size. Only buffers change.
    `update_bn` gives every submodule the top module's mode afterwards; a submodule in a mode
    of its own (a part kept in eval) gets its own back here.
    """
    modes = {m: m.training for m in net.modules()}
    gen = seeding.generator(0)
    try:
        update_bn((inputs(gen) for _ in range(batches)), net)
    finally:
        for m, mode in modes.items():
            m.training = mode
