"""LastCheckpoint on one device: last.ckpt at the first epoch's end, then no more often than
`min_seconds` at an epoch's end, at the end of training and on an exception; rank 0's clock
asked every `check_every_n_steps` batches. And what Lightning's own checkpoint callbacks lack,
which is why LastCheckpoint is kept (the kill -9, SIGTERM and skewed-clock DDP tests are in
tests/end_to_end)."""

from __future__ import annotations

from datetime import timedelta

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from monet.callbacks import LastCheckpoint


class Tiny(L.LightningModule):
    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.net, self.fail_at = torch.nn.Linear(4, 1), fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise RuntimeError("a crash")
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class CountingStrategy(SingleDeviceStrategy):
    """One device, counting the broadcasts (each one a collective under DDP)."""

    def __init__(self) -> None:
        super().__init__(device=torch.device("cpu"))
        self.broadcasts = 0

    def broadcast(self, obj, src=0):
        self.broadcasts += 1
        return super().broadcast(obj, src)


def data(batches: int = 4):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(batches, 4)), 1)


def fit(tmp_path, callbacks, epochs=2, model=None, checkpointing=False, strategy=None):
    trainer = L.Trainer(
        strategy=strategy or "auto",
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=checkpointing,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(model or Tiny(), data())
    return trainer


class Saves(LastCheckpoint):
    def save(self, trainer):
        self.steps = [*getattr(self, "steps", []), trainer.global_step]
        return super().save(trainer)


def test_last_ckpt_at_the_first_epoch_then_no_more_often_than_min_seconds(tmp_path):
    last = Saves(every_minutes=None, min_seconds=3600)
    fit(tmp_path, [last], epochs=3)
    assert last.steps == [4, 12]  # the first epoch's end, then only the end of training
    last = Saves(every_minutes=None, min_seconds=0)
    fit(tmp_path, [last], epochs=3)
    assert last.steps == [4, 8, 12]  # every epoch when the floor allows
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]


def test_an_exception_saves_the_state_of_that_moment(tmp_path):
    with pytest.raises(RuntimeError, match="a crash"):
        fit(tmp_path, [LastCheckpoint(every_minutes=None)], model=Tiny(fail_at=6))
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 6


def test_rank_zero_is_asked_every_check_every_n_steps_not_every_batch(tmp_path):
    base = CountingStrategy()
    fit(tmp_path / "none", [], strategy=base)
    ours = CountingStrategy()
    fit(tmp_path / "ours", [LastCheckpoint(every_minutes=10, check_every_n_steps=4)], strategy=ours)
    # 8 batches: 2 clock checks in the steps, 1 at the second epoch's end
    assert ours.broadcasts - base.broadcasts == 3


def test_lightning_time_trigger_broadcasts_after_every_batch(tmp_path):
    """What Lightning lacks: ModelCheckpoint(train_time_interval=...) asks rank 0 after every
    training batch, a collective in every step under DDP."""
    base = CountingStrategy()
    fit(tmp_path / "none", [], strategy=base)
    lightning = CountingStrategy()
    interval = ModelCheckpoint(
        dirpath=tmp_path, save_last=True, save_top_k=0, train_time_interval=timedelta(minutes=10)
    )
    fit(tmp_path / "lightning", [interval], checkpointing=True, strategy=lightning)
    assert lightning.broadcasts - base.broadcasts >= 8  # 8 batches


def test_lightning_model_checkpoint_cannot_write_each_epoch_and_every_n_minutes():
    """What Lightning lacks: its epoch and time triggers are mutually exclusive; last.ckpt is
    wanted at each epoch's end and every 10 minutes inside long epochs."""
    with pytest.raises(MisconfigurationException, match="mutually exclusive"):
        ModelCheckpoint(save_last=True, every_n_epochs=1, train_time_interval=timedelta(minutes=10))
    LastCheckpoint(every_n_epochs=1, every_minutes=10)


def test_lightning_on_exception_checkpoint_needs_its_folder_when_built():
    """What Lightning lacks: OnExceptionCheckpoint takes its folder at construction, before the
    run's version folder (where last.ckpt goes, and `--ckpt_path last` looks) exists."""
    with pytest.raises(TypeError, match="dirpath"):
        OnExceptionCheckpoint()
