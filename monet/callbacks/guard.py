"""Skip updates with NaN or inf gradients on the device, and stop a run that keeps making them."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from monet.callbacks.curves import is_log_step
from monet.errors import ConfigError, MonetError
from monet.runtime.compat import forget_skip, skip_step_if
from monet.runtime.rundir import run_dir


class TrainingDiverged(MonetError):
    """The gradients stayed NaN or infinite for too many optimizer steps in a row."""


class NonFiniteGuard(L.Callback):
    """An optimizer step whose gradients hold a NaN or an inf leaves the weights as they were.

    The decision never leaves the device and costs no copy: before each step the guard
    computes `ok` (every gradient finite) as a tensor, and the step's kernel skips the update
    when it is not. That takes a fused optimizer, which receives ``found_inf`` (as under
    GradScaler) and skips the update, step counts included. So the guard runs torch's Adam,
    AdamW and SGD fused: the same update in one kernel. Lightning clips gradients (its
    ``gradient_clip_val``) before the step, as for any unfused optimizer, which it refuses to do
    for one built with ``fused=True`` under mixed precision. Under 16-mixed the gradient scaler
    skips such steps itself (any optimizer); the guard still counts them. Any other optimizer
    needs 16-mixed: the guard refuses to start with one. No ``bool(tensor)``, ``.item()`` or
    collective runs in the training step, so a GPU never waits for the host. Under DDP the
    gradients are already reduced, so every rank takes the same decision.

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
        self._scaler = False  # 16-mixed: the gradient scaler skips non-finite steps
        self._log_step = False  # this batch is one the loggers log

    # -- the step -------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counts = torch.zeros(3, dtype=torch.long, device=pl_module.device)
        self._scaler = getattr(trainer.precision_plugin, "scaler", None) is not None
        for optimizer in trainer.optimizers:
            if not self._scaler and not make_fused(optimizer):
                raise ConfigError(
                    f"NonFiniteGuard skips a NaN step on the device in a fused optimizer's "
                    f"kernel; {type(optimizer).__name__} has none. Use torch.optim.Adam, AdamW "
                    "or SGD, or --trainer.precision 16-mixed, or drop the guard."
                )
            self._handles.append(optimizer.register_step_post_hook(forget_skip))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper
        grads = [p.grad for g in inner.param_groups for p in g["params"] if p.grad is not None]
        if not grads or self._counts is None:
            return
        ok = torch.isfinite(torch.nn.utils.get_total_norm(grads))
        if not self._scaler:
            skip_step_if(inner, (~ok).float())  # the fused kernel skips the update
        bad = (~ok).long()
        total, in_row, worst = self._counts.unbind()
        in_row = (in_row + 1) * bad
        self._counts = torch.stack([total + bad, in_row, torch.maximum(worst, in_row)])

    # -- the checks -----------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._log_step = is_log_step(trainer, self.check_every_n_steps)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._log_step:
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
            trainer.save_checkpoint(path, weights_only=False)  # resumable: the whole state
            raise TrainingDiverged(
                f"the gradients were NaN or inf for {worst} optimizer steps in a row (by step "
                f"{trainer.global_step}); the last finite weights are in {path}. Lower the "
                "learning rate, use --trainer.precision 32-true, or resume from that file "
                "with --ckpt_path."
            )

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = state_dict["total"]


def make_fused(optimizer: Any) -> bool:
    """Run torch's Adam, AdamW or SGD fused from now on (state made for unfused steps, e.g. by
    a checkpoint, is moved where the fused kernel keeps it); False for any other optimizer."""
    fusable = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not fusable or any(g["differentiable"] for g in optimizer.param_groups):
        return False
    if not all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params):
        return False
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, False
    for p in params:
        state = optimizer.state.get(p, {})
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].to(device=p.device, dtype=torch.float32)
    return True


FUSED_DEVICES = ("cpu", "cuda", "mps", "xpu")
