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
from torch.utils.data import DataLoader

from monet.data import MonetDataModule, UnpairedDataModule
from monet.errors import ConfigError
from monet.models import CUT, GAN
from monet.models.common import (
    GenerativeData,
    GenerativeModule,
    TranslationData,
    check_data,
    lacks,
    members,
    no_photos,
)
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
    # callbacks reach the DataModule through the contract alone
    imports = re.findall(r"^from (monet\.data\S*) import (.*)$", callbacks, re.M)
    assert all(module != "monet.data" and "DataModule" not in names for module, names in imports)
    assert not re.search(r"isinstance\([^)]*DataModule", callbacks)
    assert "trainer.datamodule" not in callbacks  # `datamodule_of` checks it first


# Every member of the DataModule contract, each as small as it can be.
MEMBERS = {
    "image_size": 32,
    "batch_size": 4,
    "exclude": (),
    "train_dataloader": lambda self: DataLoader(torch.zeros(8, 3, 32, 32), batch_size=4),
    "reference_images": lambda self: torch.zeros(8, 3, 32, 32, dtype=torch.uint8),
    "predict_names": property(lambda self: ["00000"]),
}


def data_without(member: str | None, base: type = object) -> object:
    """A DataModule with every member of the contract but `member`."""
    return type(f"Without_{member}", (base,), {k: v for k, v in MEMBERS.items() if k != member})()


def test_the_contract_declares_every_member_the_models_and_callbacks_use():
    assert members(GenerativeData) == list(MEMBERS)
    assert members(TranslationData) == [*MEMBERS, "sample_photos"]
    check_data(data_without(None))  # all of them: accepted


@pytest.mark.parametrize("member", list(MEMBERS))
def test_a_datamodule_without_a_member_is_refused_in_one_line_naming_it(member):
    with pytest.raises(ConfigError) as err:
        check_data(data_without(member))
    message = str(err.value)
    assert message.startswith(f"data: Without_{member} has no {member}, which the models and")
    assert "\n" not in message and "GenerativeData" in message


def test_the_trainer_refuses_such_a_datamodule_before_the_first_step(tmp_path):
    import lightning as L

    trainer = quiet_trainer(tmp_path)
    model = GAN(WGANGenerator(8, 4, image_size=32), WGANCritic(4, image_size=32))
    with pytest.raises(ConfigError, match="has no reference_images, which the models"):
        trainer.fit(model, datamodule=data_without("reference_images", L.LightningDataModule))
    assert trainer.global_step == 0


def test_the_shipped_datamodules_keep_to_the_contract(kaggle_dir):
    paintings = MonetDataModule(str(kaggle_dir), image_size=32)
    pairs = UnpairedDataModule(str(kaggle_dir), image_size=32)  # not set up: nothing is read
    assert lacks(paintings, GenerativeData) == [] and lacks(pairs, TranslationData) == []
    assert lacks(paintings, TranslationData) == ["sample_photos"]  # one domain, no photos
    cut = CUT(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32))
    check_data(paintings, GAN(WGANGenerator(8, 4, image_size=32), WGANCritic(4, image_size=32)))
    check_data(pairs, cut)
    with pytest.raises(ConfigError) as err:
        check_data(paintings, cut)  # the one "no photos" error, as the model raises it too
    assert (
        str(err.value)
        == str(no_photos(cut, paintings))
        == (
            "CUT translates photos and trains on painting/photo pairs, and MonetDataModule holds "
            "none: use data.class_path monet.data.UnpairedDataModule."
        )
    )
    with pytest.raises(ConfigError, match=re.escape(str(err.value))):
        cut.sample_inputs(2, datamodule=paintings)
