"""The contract between models and the DataModule (GenerativeModule): batches reach the steps
in the model's memory layout, noise families draw their own inputs, and the models and
callbacks keep to it."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from support import ROOT, quiet_trainer
from torch import nn

from monet.data import MonetDataModule, UnpairedDataModule
from monet.models import GAN
from monet.models.common import GenerativeModule
from monet.nets import WGANCritic, WGANGenerator


class Recorder(GenerativeModule):
    """Keeps every batch its steps receive."""

    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.net = nn.Conv2d(3, 3, 1)
        self.seen: list[tuple[str, object]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", batch))
        x = batch["monet"] if isinstance(batch, dict) else batch
        return self.net(x).mean()

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.1)


def images_of(batch) -> list[torch.Tensor]:
    return list(batch.values()) if isinstance(batch, dict) else [batch]


@pytest.mark.parametrize("unpaired", [False, True], ids=["monet", "unpaired"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_batches_reach_the_steps_in_the_models_memory_format(
    unpaired, channels_last, kaggle_dir, tmp_path, one_thread
):
    kind = UnpairedDataModule if unpaired else MonetDataModule
    dm = kind(str(kaggle_dir), image_size=32, batch_size=2)
    model = Recorder(channels_last)
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    with warnings.catch_warnings(record=True) as caught:
        trainer.fit(model, dm)
    assert not [w for w in caught if "batch_transfer" in str(w.message)]  # both hooks: by design
    assert [stage for stage, _ in model.seen] == ["val", "train", "train", "val"]  # sanity check
    for stage, batch in model.seen:
        assert isinstance(batch, dict) == (unpaired and stage == "train")
        for x in images_of(batch):  # the DataModule's work (to [-1, 1]) and the model's layout
            assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
            assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert x.is_contiguous() != channels_last


def test_the_layout_hook_leaves_what_is_not_an_image_alone():
    model = Recorder(channels_last=True)
    seeds = torch.arange(4)
    assert model.on_after_batch_transfer(seeds, 0) is seeds  # predict's per-image seeds
    out = model.on_after_batch_transfer({"a": torch.zeros(2, 3, 4, 4), "b": seeds}, 0)
    assert out["a"].is_contiguous(memory_format=torch.channels_last) and out["b"] is seeds


def test_noise_families_draw_noise_and_ignore_the_datamodule():
    model = GAN(WGANGenerator(8, 4, image_size=32), WGANCritic(4, image_size=32))
    a = model.sample_inputs(3, torch.Generator().manual_seed(1))
    b = model.sample_inputs(3, torch.Generator().manual_seed(1), datamodule=object())
    assert torch.equal(a, b) and a.shape == (3, 8)


def test_models_and_callbacks_keep_to_the_contract():
    callbacks = "".join(p.read_text() for p in (ROOT / "monet" / "callbacks").glob("*.py"))
    assert not re.search(r"(hasattr|getattr)\(pl_module", callbacks)
    assert "sample_noise" not in callbacks  # grids and metrics draw through sample_inputs
    models = {p.name: p.read_text() for p in (ROOT / "monet" / "models").glob("*.py")}
    for name, text in models.items():
        assert not re.search(r"^(from|import) monet\.data", text, re.M), name
        assert "trainer.datamodule.photos" not in text and "_trainer.datamodule" not in text
    assert "datamodule" not in models["cyclegan.py"].split("def sample_inputs")[0]
    data = "".join(p.read_text() for p in (ROOT / "monet" / "data").glob("*.py"))
    assert "lightning_module" not in data and "channels_last" not in data
