"""No host syncs in the training step: `aten::_local_scalar_dense` (the op behind `.item()`,
`bool(tensor)` and `float(tensor)`) is counted over every training batch of real shipped-config
runs, progress bar, loggers and every callback included. On a GPU each such call would wait for
the queued kernels; only the batches the loggers log may read values back.

Reads that torch's optimizers make of their `step` counters are not counted: beside CUDA
weights those counters are host tensors (unless `capturable`), so reading them waits for
nothing; on this CPU-only test every tensor is a host tensor and they would be."""

from __future__ import annotations

import traceback

import lightning as L
import pytest
import torch
from conftest import ROOT, shrink_nets, small
from torch.utils._python_dispatch import TorchDispatchMode

from monet.__main__ import cli_main
from monet.callbacks.curves import is_log_step


class CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and not optimizer_step_counter():
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
        self.start, self.logs = self.mode.count, is_log_step(trainer)

    def end(self, trainer: L.Trainer) -> None:
        self.batches.append((self.logs, self.mode.count - self.start))


@pytest.mark.parametrize("name", ["fastgan", "wgan_gp", "ddpm_lib", "cyclegan_128"])
def test_no_host_sync_in_training_steps_that_do_not_log(name, kaggle_dir, tmp_path, one_thread):
    config = ROOT / "configs" / f"{name}.yaml"
    args = small(
        config,
        kaggle_dir,
        tmp_path,
        "--trainer.max_steps",
        "24",
        "--trainer.log_every_n_steps",
        "4",
        "--trainer.enable_progress_bar",
        "true",
        *shrink_nets(config),
    )
    cli = cli_main(args, run=False)
    mode = CountSyncs()
    counter = PerBatch(mode)
    trainer, model = cli.trainer, cli.model
    trainer.callbacks.insert(0, counter)
    model.on_train_batch_end = lambda *a: counter.end(trainer)
    with mode:
        trainer.fit(model, cli.datamodule)
    quiet = [n for logs, n in counter.batches if not logs]
    loud = [n for logs, n in counter.batches if logs]
    assert len(quiet) >= 8 and loud, counter.batches
    assert quiet == [0] * len(quiet), counter.batches
    assert sum(loud) > 0  # the count works: logging batches read the losses back
