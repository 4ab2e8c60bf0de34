"""Skip updates with NaN or inf gradients on the device, and stop a run that keeps making them."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from monet.callbacks.curves import is_log_step
from monet.errors import MonetError
from monet.rundir import run_dir


class TrainingDiverged(MonetError):
    """The gradients stayed NaN or infinite for too many optimizer steps in a row."""


class NonFiniteGuard(L.Callback):
    """An optimizer step whose gradients hold a NaN or an inf leaves the weights as they were.

    The decision never leaves the device: before each step the guard computes `ok` (every
    gradient finite) as a tensor. A fused optimizer (``fused: true``, as the shipped configs
    use) gets it as `found_inf` and skips the update in its kernel; for any other optimizer the
    guard copies the weights and the optimizer's state first, and after the step every tensor
    becomes ``where(ok, stepped, copy)``. No ``bool(tensor)``, ``.item()`` or
    collective runs in the training step, so a GPU never waits for the host. Under DDP the
    gradients are already reduced, so every rank takes the same decision. Under 16-mixed the
    gradient scaler skips such steps itself; the guard still counts them.

    The counts are read every `check_every_n_steps` batches (by default when the loggers log)
    and at each epoch's end: ``train/nonfinite_steps`` is logged, and after `max_in_row`
    non-finite steps in a row the weights (the last finite ones) are written to
    ``checkpoints/last-finite.ckpt`` and the run stops with a message that says what to do.
    """

    def __init__(self, max_in_row: int = 10, check_every_n_steps: int | None = None) -> None:
        if max_in_row < 1:
            raise ValueError(f"NonFiniteGuard max_in_row={max_in_row} must be at least 1")
        self.max_in_row, self.check_every_n_steps = max_in_row, check_every_n_steps
        self.total = 0  # non-finite steps of the whole run (saved in checkpoints)
        self._counts: Tensor | None = None  # on the device: [total since check, in a row, worst]
        self._handles: list[Any] = []
        # per optimizer: (ok, the tensors the step changes, their copies, creates state)
        self._pending: dict[int, tuple[Tensor, list[Tensor], list[Tensor], bool]] = {}

    # -- the step -------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts = torch.zeros(3, dtype=torch.long, device=pl_module.device)
        for optimizer in trainer.optimizers:
            self._handles.append(optimizer.register_step_post_hook(self._restore))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper
        params = [p for g in inner.param_groups for p in g["params"] if p.grad is not None]
        if not params or self._counts is None:
            return
        norms = torch._foreach_norm([p.grad for p in params])
        ok = torch.isfinite(torch.stack(norms).sum())
        if fused(inner):  # the fused kernel skips the update itself (as under GradScaler)
            inner.found_inf = (~ok).float()
            self._pending[id(inner)] = (ok, [], [], False)
        else:  # Adam keeps its step count on the host: only the device's tensors are restored
            state = [t for p in params for t in inner.state.get(p, {}).values() if on(t, ok.device)]
            tensors = [p.data for p in params] + state
            copies = torch._foreach_add(tensors, 0)
            fresh = any(p not in inner.state for p in params)  # this step creates state
            self._pending[id(inner)] = (ok, tensors, copies, fresh)
        bad = (~ok).long()
        total, in_row, worst = self._counts.unbind()
        in_row = (in_row + 1) * bad
        self._counts = torch.stack([total + bad, in_row, torch.maximum(worst, in_row)])

    def _restore(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        pending = self._pending.pop(id(optimizer), None)
        if pending is None:
            return
        ok, tensors, copies, fresh = pending
        if fused(optimizer):
            optimizer.__dict__.pop("found_inf", None)  # (GradScaler may have taken it already)
            return
        for t, c in zip(tensors, copies, strict=True):
            t.copy_(torch.where(ok, t, c))
        if not fresh:
            return
        # state the step created (an optimizer's first step): from finite gradients or zero
        restored = {id(t) for t in tensors}
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, t in optimizer.state.get(p, {}).items():
                    if on(t, ok.device) and id(t) not in restored and t.is_floating_point():
                        optimizer.state[p][key] = torch.where(ok, t, torch.zeros_like(t))

    # -- the checks -----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if is_log_step(trainer, self.check_every_n_steps):
            self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """The one host sync: read the counts, log them, stop a diverged run."""
        if self._counts is None:
            return
        new, in_row, worst = self._counts.tolist()
        in_row_now = self._counts[1]
        self._counts = torch.stack([torch.zeros_like(in_row_now), in_row_now, in_row_now])
        self.total += new
        if self.total:
            trainer.lightning_module.log("train/nonfinite_steps", float(self.total))
        if worst >= self.max_in_row:
            path = run_dir(trainer) / "checkpoints" / "last-finite.ckpt"
            trainer.save_checkpoint(path)
            raise TrainingDiverged(
                f"the gradients were NaN or inf for {worst} optimizer steps in a row (by step "
                f"{trainer.global_step}); the last finite weights are in {path}. Lower the "
                "learning rate, use --trainer.precision 32-true, or resume from that file "
                "with --ckpt_path."
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._pending = [], {}

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = state_dict["total"]


def fused(optimizer: Any) -> bool:
    """A fused torch optimizer (Adam, AdamW, SGD with fused=True) takes `found_inf` and skips
    the update on the device when it is 1, step counts included."""
    supports = getattr(optimizer, "_step_supports_amp_scaling", False)
    return supports and all(group.get("fused") for group in optimizer.param_groups)


def on(t: Any, device: torch.device) -> bool:
    return torch.is_tensor(t) and t.device == device
