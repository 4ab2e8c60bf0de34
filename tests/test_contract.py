"""The model/DataModule contract: inputs of grids and metrics, batch layout, and seeding."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
from support import ROOT, quiet_trainer
from torch import nn

from monet import seeding
from monet.data import MonetDataModule, UnpairedDataModule
from monet.errors import ConfigError
from monet.models import GAN, CycleGAN
from monet.models.common import GenerativeModule
from monet.nets import PatchDiscriminator, ResnetGenerator, WGANCritic, WGANGenerator


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


def test_a_cyclegan_takes_its_photos_from_the_datamodule_it_is_given(kaggle_dir):
    model = CycleGAN(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32))
    with pytest.raises(ConfigError, match="use data.class_path monet.data.UnpairedDataModule"):
        model.sample_inputs(2)  # no DataModule given: the model looks none up
    paintings = MonetDataModule(str(kaggle_dir), image_size=32)
    with pytest.raises(ConfigError) as err:
        model.sample_inputs(2, datamodule=paintings)
    message = str(err.value)
    assert "\n" not in message and "use data.class_path monet.data.UnpairedDataModule" in message
    dm = UnpairedDataModule(str(kaggle_dir), image_size=32)
    dm.setup("fit")
    photos = model.sample_inputs(7, torch.Generator().manual_seed(3), dm)  # 5 photos: repeated
    assert photos.shape == (7, 3, 32, 32) and photos.min() >= -1 and photos.max() <= 1
    again = dm.sample_photos(7, torch.Generator().manual_seed(3))
    assert torch.equal(photos, again) and model._trainer is None
    with pytest.raises(ConfigError, match="painting/photo pairs.*UnpairedDataModule"):
        model.training_step(torch.zeros(1, 3, 32, 32), 0)


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


def test_stream_seeds_are_stable_across_processes_and_differ_by_rank():
    code = "from monet.seeding import stream_seed; print(stream_seed(0, 1, 2), stream_seed(7))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == [str(seeding.stream_seed(0, 1, 2)), str(seeding.stream_seed(7))]
    seeds = {seeding.stream_seed(5, step, rank) for step in range(50) for rank in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**62 for s in seeds)
    g = seeding.generator(5, 0)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=seeding.generator(5, 0)))
    assert not torch.equal(
        torch.rand(3, generator=seeding.generator(5, 1)), torch.rand(3, generator=g)
    )


def test_each_rank_gets_its_own_global_streams_from_the_same_start():
    state = seeding.rng_state()
    try:
        draws = []
        for rank in (0, 1, 1):
            torch.manual_seed(42)  # what seed_everything gives every rank
            seeding.offset_by_rank(rank)
            draws.append(torch.rand(4))
        assert not torch.equal(draws[0], draws[1]) and torch.equal(draws[1], draws[2])
    finally:
        seeding.set_rng_state(state)


def test_rng_states_round_trip():
    saved = seeding.gather_rng_states()
    first = torch.rand(3)
    seeding.restore_rank_state(saved)
    assert torch.equal(torch.rand(3), first)
    seeding.restore_rank_state(None)  # a checkpoint without states changes nothing


def test_tensor_seed_follows_the_contents():
    x = torch.randn(3, 8, 8)
    assert seeding.tensor_seed(x) == seeding.tensor_seed(x.clone())
    assert seeding.tensor_seed(x) != seeding.tensor_seed(x + 1)
