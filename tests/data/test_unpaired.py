"""The two-domain DataModule of photo -> Monet: each domain shuffled on its own with the shorter
one repeating, reproducible pairs that resume where they stopped, the epoch size, and both
domains of the real Kaggle data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import run_fit, write_tfrecord

from monet.data import Augment, FiveCrop, UnpairedDataModule
from monet.errors import ConfigError
from monet.images import to_unit


def datamodule(root: Path, **kw) -> UnpairedDataModule:
    dm = UnpairedDataModule(str(root), image_size=32, batch_size=kw.pop("batch_size", 4), **kw)
    dm.setup("fit")
    return dm


def batches(dm: UnpairedDataModule, steps: range) -> list[dict[str, torch.Tensor]]:
    return [dm.pairs(step, 0, dm.batch_size, "cpu") for step in steps]


def fingerprint(x: torch.Tensor) -> list[float]:
    return [round(v, 3) for v in x.mean(dim=(1, 2, 3)).tolist()]


def test_each_domain_is_shuffled_on_its_own_and_the_shorter_one_repeats(kaggle_dir):
    dm = datamodule(kaggle_dir, batch_size=2)  # 12 paintings, 5 photos
    assert dm.epoch_length == 12 and len(dm.train_dataloader()) == 6
    seen = batches(dm, range(6))
    monet = [v for b in seen for v in fingerprint(b["monet"])]
    photo = [v for b in seen for v in fingerprint(b["photo"])]
    assert sorted(monet) == sorted(fingerprint(to_unit(dm.train_images)))  # each painting once
    assert sorted(photo[:5]) == sorted(fingerprint(to_unit(dm.photo.train_images)))  # a round
    assert sorted(photo[5:10]) == sorted(photo[:5]) and photo[5:10] != photo[:5]  # reshuffled
    for b in seen:
        assert b["monet"].shape == b["photo"].shape == (2, 3, 32, 32)
        assert b["monet"].min() >= -1 and b["photo"].max() <= 1


def test_pairs_are_reproducible_and_resume_where_they_stopped(kaggle_dir):
    a, b = datamodule(kaggle_dir, seed=3), datamodule(kaggle_dir, seed=3)
    for x, y in zip(batches(a, range(4)), batches(b, range(4)), strict=True):
        assert torch.equal(x["monet"], y["monet"]) and torch.equal(x["photo"], y["photo"])
    other = datamodule(kaggle_dir, seed=4)
    assert not torch.equal(batches(other, range(1))[0]["monet"], batches(a, range(1))[0]["monet"])
    resumed = datamodule(kaggle_dir, seed=3)
    resumed.load_state_dict({"steps": 7})
    assert resumed._steps == 7  # the DataModule's state in every checkpoint: the stream position


def test_epoch_size_and_wrong_settings(kaggle_dir):
    assert datamodule(kaggle_dir, epoch_size=40).epoch_length == 40
    with pytest.raises(ConfigError, match="epoch_size=2 must be at least the batch size"):
        UnpairedDataModule(str(kaggle_dir), batch_size=4, epoch_size=2)
    with pytest.raises(ConfigError, match="five_crop .* turn it off for translation"):
        UnpairedDataModule(str(kaggle_dir), augment=Augment(five_crop=FiveCrop(enabled=True)))


@pytest.mark.slow
def test_trains_on_the_real_kaggle_tfrecords_of_both_domains(shared_data, tmp_path):
    # the 300 paintings' TFRecords; the shared data holds the photos as JPEGs (400 of the
    # 7,038): 40 of them go into a TFRecord of Kaggle's layout, the rest as JPEGs
    jpegs = sorted((shared_data / "photo_jpg").glob("*.jpg"))
    items = [(p.stem, p.read_bytes()) for p in jpegs[:40]]
    write_tfrecord(tmp_path / "photos" / "photo_tfrec" / "photo00-40.tfrec", items)
    for root, expected in ((tmp_path / "photos", 40), (shared_data, len(jpegs))):
        cli = run_fit(
            shared_data,
            tmp_path / f"run{expected}",
            *("--trainer.fast_dev_run", "2", "--data.init_args.photo_root", str(root)),
        )
        dm = cli.datamodule
        assert len(dm.real) == 300 and len(dm.photo.real) == expected
        assert dm.photo.names[0] == jpegs[0].stem and cli.trainer.global_step >= 2
