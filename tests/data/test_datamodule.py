"""The DataModule: decode-once cache, loaders, device-side augmentation, state, and a request
for no images refused."""

from __future__ import annotations

import pytest
import torch
from support import make_kaggle_zip

from monet.data import Augment, FiveCrop, MonetDataModule, Rotation
from monet.errors import ConfigError


class FakeTrainer:
    """Just what prepare_batch reads."""

    def __init__(self, training: bool) -> None:
        self.training, self.global_rank, self.predicting = training, 0, False


def test_setup_decodes_once_into_uint8(kaggle_dir):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=4)
    dm.setup("fit")
    assert dm.real.shape == (12, 3, 32, 32) and dm.real.dtype == torch.uint8
    first = dm.real
    dm.setup("validate")  # a second call reuses the cache
    assert dm.real is first
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.uint8
    assert len(dm.train_dataloader()) == 3 and len(dm.val_dataloader()) == 3


def test_validation_runs_on_a_fixed_evenly_spaced_subset(kaggle_dir):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=4, val_size=5)
    dm.setup("fit")
    val = torch.cat(list(dm.val_dataloader()))
    assert torch.equal(val, dm.real[[0, 3, 6, 8, 11]])  # the same five every epoch
    with pytest.raises(ConfigError, match="data.val_size=0"):
        MonetDataModule(str(kaggle_dir), val_size=0)


def test_five_crop_expands_training_set_only(kaggle_dir):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, augment=Augment(five_crop=FiveCrop(True)))
    dm.setup()
    assert len(dm.train_images) == 72 and len(dm.real) == 12


def test_batches_become_float_in_range_and_augment_only_in_training(kaggle_dir):
    dm = MonetDataModule(str(kaggle_dir), image_size=32, batch_size=12, augment=Augment(hflip=1.0))
    dm.setup()
    raw = dm.real
    dm.trainer = FakeTrainer(training=False)
    val = dm.prepare_batch(raw)
    assert val.dtype == torch.float32 and val.min() >= -1 and val.max() <= 1
    assert torch.allclose(val, raw.float() / 127.5 - 1)
    dm.trainer = FakeTrainer(training=True)
    assert torch.allclose(dm.prepare_batch(raw), val.flip(-1))


def test_augmentation_stream_is_seeded_and_resumable(kaggle_dir):
    cfg = Augment(hflip=0.5, rotation=Rotation(p=0.5))

    def run(dm, n):
        dm.trainer = FakeTrainer(training=True)
        return [dm.prepare_batch(dm.real[:8]) for _ in range(n)]

    a = MonetDataModule(str(kaggle_dir), image_size=32, augment=cfg, seed=3)
    a.setup()
    first = run(a, 4)
    b = MonetDataModule(str(kaggle_dir), image_size=32, augment=cfg, seed=3)
    b.setup()
    run(b, 2)
    state = b.state_dict()
    c = MonetDataModule(str(kaggle_dir), image_size=32, augment=cfg, seed=3)
    c.setup()
    c.load_state_dict(state)
    resumed = run(c, 2)
    assert all(torch.equal(x, y) for x, y in zip(first[2:], resumed))
    assert not torch.equal(first[0], first[1])


def test_memory_mapped_cache_file_is_reused(kaggle_dir, tmp_path):
    cache = tmp_path / "cache"
    a = MonetDataModule(str(kaggle_dir), image_size=32, cache_dir=str(cache))
    a.setup()
    files = list(cache.glob("*.pt"))
    assert len(files) == 1 and "monet-32px" in files[0].name
    stamp = files[0].stat().st_mtime_ns
    b = MonetDataModule(str(kaggle_dir), image_size=32, cache_dir=str(cache))
    b.setup()
    assert torch.equal(a.real, b.real) and files[0].stat().st_mtime_ns == stamp
    assert b.names == a.names
    c = MonetDataModule(str(kaggle_dir), image_size=64, cache_dir=str(cache))
    c.setup()  # another size is another cache file
    assert len(list(cache.glob("*.pt"))) == 2


def test_zip_source_through_the_datamodule(kaggle_dir, tmp_path):
    archive = make_kaggle_zip(kaggle_dir, tmp_path / "gan-getting-started.zip")
    dm = MonetDataModule(str(archive), domain="photo", image_size=32)
    dm.setup()
    assert dm.real.shape == (5, 3, 32, 32)


def test_real_shared_data(shared_data):
    dm = MonetDataModule(str(shared_data), image_size=64, augment=Augment(five_crop=FiveCrop(True)))
    dm.setup()
    assert dm.real.shape == (300, 3, 64, 64) and len(dm.train_images) == 1800


def test_a_request_for_no_images_is_refused():
    with pytest.raises(ConfigError, match=r"data.predict_size=0 asks for no images"):
        MonetDataModule(predict_size=0)
