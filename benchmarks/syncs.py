"""Host syncs per training batch: `aten::_local_scalar_dense` (the op behind `.item()`,
`bool(tensor)` and `float(tensor)`) counted over every training batch of a fit, from the first
callback's on_train_batch_start to the module's on_train_batch_end. On a GPU each such call
waits for the queued kernels; only the batches the loggers log should read values back.

Reads that torch's optimizers make of their `step` counters are not counted: beside CUDA
weights those counters are host tensors (unless `capturable`), so reading them waits for
nothing; on a CPU every tensor is a host tensor and they would be.

    batches = count_syncs(trainer, model, datamodule)  # [(a logging batch, syncs), ...]
"""

from __future__ import annotations

import traceback

import lightning as L

from monet.callbacks.curves import is_log_step
from monet.runtime.compat import LOCAL_SCALAR_DENSE, TorchDispatchMode


class CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is LOCAL_SCALAR_DENSE and not optimizer_step_counter():
            self.count += 1
        return func(*args, **(kwargs or {}))


def optimizer_step_counter() -> bool:
    return any("/torch/optim/" in f.filename for f in traceback.extract_stack(limit=12))


class PerBatch(L.Callback):
    """Syncs from the first callback's on_train_batch_start to the module's on_train_batch_end
    (which Lightning calls after every callback's): the whole training step."""

    def __init__(self, mode: CountSyncs) -> None:
        self.mode, self.start = mode, 0
        self.batches: list[tuple[bool, int]] = []  # (a logging batch, syncs)

    def on_train_batch_start(self, trainer, *args) -> None:
        self.start, self.logs = self.mode.count, is_log_step(trainer)  # asked at batch start

    def end(self, trainer: L.Trainer) -> None:
        self.batches.append((self.logs, self.mode.count - self.start))


def count_syncs(
    trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule
) -> list[tuple[bool, int]]:
    """`trainer.fit(model, datamodule)` with the syncs of each training batch counted: (whether
    the loggers log that batch, its syncs) for every batch. The count goes first among the
    trainer's callbacks and takes the place of the module's own on_train_batch_end hook (the
    shipped families define none)."""
    mode = CountSyncs()
    counter = PerBatch(mode)
    trainer.callbacks.insert(0, counter)
    model.on_train_batch_end = lambda *a: counter.end(trainer)
    with mode:
        trainer.fit(model, datamodule)
    return counter.batches
