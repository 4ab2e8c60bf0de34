"""`last.ckpt` that outlives a kill: written during training, atomically, and on the way out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from monet.runtime.rundir import run_dir


class LastCheckpoint(L.Callback):
    """Keep `<run dir>/checkpoints/last.ckpt` no older than an epoch or `every_minutes`.

    At an epoch's end it is written unless the last write is under `min_seconds` old: an epoch
    of 300 paintings takes seconds, and a GAN checkpoint (two networks, an EMA copy, two Adam
    states) is tens of MB, so writing it every epoch would cost training time for nothing.

    Each write goes to a temporary file that then replaces `last.ckpt` (`os.replace` is atomic
    on POSIX), so a kill during the write leaves the previous checkpoint whole. On an exception,
    Ctrl-C or SIGTERM (Lightning turns SIGTERM into an exception at the next step) the state of
    that moment is saved before the run ends, and the message says how to resume:
    ``--ckpt_path last``. `kill -9` cannot be caught; it loses at most the time since the last
    write.

    Every rank takes part in a write, so every rank must decide to write at the same batch:
    the clocks of the ranks disagree (they start at different moments, on different hosts), and
    a rank that entered the write's barrier while the others went on to the next step's
    all-reduce would wait for ever. So the clock is rank 0's, and its answer is broadcast: at
    an epoch's end when the epoch is due, and for `every_minutes` every `check_every_n_steps`
    batches (by default the trainer's `log_every_n_steps`), not every batch. On one device the
    broadcast is free.

    Why not Lightning's own parts (each gap has a test in tests/callbacks/test_checkpoint.py):
    `ModelCheckpoint` takes `every_n_epochs` or `train_time_interval`, not both; its time
    trigger asks rank 0 with a broadcast after every batch (a collective in every training
    step under DDP), and its `last.ckpt` at an epoch's end only follows a top-k write.
    `OnExceptionCheckpoint` needs its folder when it is built, before the run's version folder
    exists. Lightning's own write is atomic only where the system temp folder shares a file
    system with the run (it moves a temporary file from there): here the temporary file sits
    beside `last.ckpt`.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        every_minutes: float | None = 10.0,
        min_seconds: float = 60,
        check_every_n_steps: int | None = None,
    ) -> None:
        self.every_n_epochs, self.every_minutes = every_n_epochs, every_minutes
        self.min_seconds, self.check_every_n_steps = min_seconds, check_every_n_steps
        self._batches = 0  # training batches of this process: the same count on every rank
        self._last_write = time.monotonic()
        self._saved_step: int | None = None  # the step of the newest write of this run

    def path(self, trainer: L.Trainer) -> Path:
        return run_dir(trainer) / "checkpoints" / "last.ckpt"

    def save(self, trainer: L.Trainer) -> Path:
        path = self.path(trainer)
        tmp = path.with_name(f".last.ckpt.tmp{os.getpid()}")
        trainer.save_checkpoint(tmp, weights_only=False)  # the whole state; every rank takes part
        if trainer.is_global_zero:
            os.replace(tmp, path)
        trainer.strategy.barrier()
        self._last_write, self._saved_step = time.monotonic(), trainer.global_step
        return path

    def _skip(self, trainer: L.Trainer) -> bool:
        done = self._saved_step == trainer.global_step  # nothing new since the last write
        return bool(trainer.fast_dev_run) or trainer.sanity_checking or done

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_write = time.monotonic()  # the clock of `every_minutes` starts with training

    def _rank_zero_clock(self, trainer: L.Trainer, older_than: float) -> bool:
        """Whether rank 0's last write is older than `older_than` seconds, on every rank."""
        return trainer.strategy.broadcast(time.monotonic() - self._last_write > older_than, src=0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        every = self.check_every_n_steps or trainer.log_every_n_steps or 50
        if not self.every_minutes or self._batches % every or self._skip(trainer):
            return
        if self._rank_zero_clock(trainer, 60 * self.every_minutes):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or self._skip(trainer):
            return
        # the first epoch's end always writes; later ones unless the last write is recent
        if self._saved_step is None or self._rank_zero_clock(trainer, self.min_seconds):
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._skip(trainer):
            self.save(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self._skip(trainer) or trainer.global_step == 0:
            return
        path = self.save(trainer)
        rank_zero_info(
            f"monet: {type(exception).__name__} at step {trainer.global_step}; saved {path}. "
            "Resume with the same command and --ckpt_path last."
        )
