"""The one LightningDataModule: every family trains on it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, RandomSampler

from monet.data.augment import Augment, augment_batch_, preprocess
from monet.data.sources import find_files, read_images
from monet.errors import ConfigError
from monet.images import to_unit
from monet.nets.common import check_image_size
from monet.runtime import seeding


class _Images(Dataset):
    """Indexes a uint8 (N, 3, S, S) tensor, a whole batch in one gather (`__getitems__`)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        # The DataLoader asks for a batch's indices at once; one index_select is 3x faster than
        # 64 items stacked by the default collate.
        return self.images.index_select(0, torch.tensor(indices))


def _batched(batch: torch.Tensor) -> torch.Tensor:
    """The collate of `_Images`: `__getitems__` already returns the stacked batch."""
    return batch


class EpochShuffle(RandomSampler):
    """A fresh order each epoch, drawn from (seed, epoch): a resumed run sees the same orders.

    A RandomSampler, so under DDP Lightning swaps in its DistributedSampler (also epoch-seeded).
    """

    def __init__(self, data: Dataset, seed: int) -> None:
        super().__init__(data)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning's fit loop
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = seeding.generator(self.seed, self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=gen).tolist())


class MonetDataModule(L.LightningDataModule):
    """Kaggle "I'm Something of a Painter Myself" images, decoded once, augmented on the device.

    Images are decoded a single time into a uint8 cache (optionally a memory-mapped file in
    `cache_dir`). Batches leave the loader as uint8 and become float in [-1, 1] after the
    transfer to the device, where the random augmentations run as batched tensor ops.

    Args:
        root: Kaggle-layout folder, a folder of images or TFRecords, or the Kaggle zip.
        domain: which half of the data set: ``monet`` paintings or ``photo``.
        format: ``tfrecord``, ``jpg`` (any image file) or ``auto`` (TFRecords when present).
        files: explicit list of TFRecord or image files, used instead of `root`.
        image_size: side of the square training images.
        batch_size: images per training and validation batch (per device).
        num_workers: DataLoader worker processes (0 is usually fastest: the data is in memory).
        augment: the augmentations, each switchable.
        cache_dir: folder for a memory-mapped cache file, reused across runs.
        seed: seed of the augmentations and the shuffling.
        val_size: paintings in validation: a fixed, evenly spaced subset (null: all), so
            validation costs a few steps, not an epoch.
        predict_size: images that ``predict`` generates.
        predict_seed: seed of the generated images; image i always gets the same noise.
    """

    def __init__(
        self,
        root: str | None = "data",
        domain: Literal["monet", "photo"] = "monet",
        format: Literal["auto", "tfrecord", "jpg"] = "auto",
        files: list[str] | None = None,
        image_size: int = 64,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: Augment | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        val_size: int | None = 64,
        predict_size: int = 64,
        predict_seed: int = 0,
    ) -> None:
        super().__init__()
        check_image_size("MonetDataModule", image_size, at_least=8, key="data.image_size")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1.")
        self.root, self.domain, self.format, self.files = root, domain, format, files
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.augment = augment or Augment()
        self.cache_dir, self.seed = cache_dir, seed
        self.predict_size, self.predict_seed = predict_size, predict_seed
        if predict_size < 1:
            raise ConfigError(
                f"data.predict_size={predict_size} asks for no images: give the number of images "
                "predict should generate (1 or more)."
            )
        if val_size is not None and val_size < 1:
            raise ConfigError(f"data.val_size={val_size} must be at least 1, or null for all.")
        self.val_size = val_size
        self.real: torch.Tensor | None = None  # (N, 3, S, S) uint8: the images as they are
        self.train_images: torch.Tensor | None = None  # the same, expanded by five-crop
        self.names: list[str] = []
        self.paths: list[str] = []  # each image's file below the root (a TFRecord's: its name)
        self.exclude: tuple[Path, ...] = ()  # never read: `predict`'s outputs (set by the CLI)
        self._steps = 0  # training batches augmented so far: the augmentation RNG stream

    # -- the decode-once cache ---------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.real is not None or stage == "predict":  # predicting needs no real images
            return
        sources = find_files(self.root, self.domain, self.format, self.files, self.exclude)
        cache = self._cache_path(sources)
        if cache is not None and cache.exists():
            saved = torch.load(cache, mmap=True, weights_only=True)
        else:
            saved = self._decode(sources)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".tmp{os.getpid()}")
                torch.save(saved, tmp)
                os.replace(tmp, cache)  # atomic: a killed run never leaves half a cache
                saved = torch.load(cache, mmap=True, weights_only=True)
        self.real, self.train_images, self.names = saved["real"], saved["train"], saved["names"]
        self.paths = saved.get("paths", self.names)
        rank_zero_info(
            f"MonetDataModule: {len(self.real)} {self.domain} images from {len(sources)} files, "
            f"{len(self.train_images)} training images at {self.image_size} px"
        )

    def _decode(self, sources: list) -> dict[str, Any]:
        names, paths, real, train = [], [], [], []
        for source in sources:
            for name, image in read_images(source):
                views = preprocess(image, self.image_size, self.augment.five_crop)
                names.append(name)
                paths.append(source.relative if source.kind == "image" else name)
                real.append(views[0])
                train.extend(views)
        real, train = torch.stack(real), torch.stack(train)
        return {"names": names, "paths": paths, "real": real, "train": train}

    def _cache_path(self, sources: list) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha1(
            repr(
                ([(s.name, s.stamp) for s in sources], self.image_size, self.augment.five_crop)
            ).encode()
        ).hexdigest()[:16]
        return Path(self.cache_dir) / f"monet-{self.domain}-{self.image_size}px-{key}.pt"

    # -- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        data = _Images(self.train_images)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=EpochShuffle(data, self.seed),
            drop_last=len(self.train_images) >= self.batch_size,
            collate_fn=_batched,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        n = len(self.real)
        keep = torch.linspace(0, n - 1, min(self.val_size or n, n)).round().long()
        return DataLoader(
            _Images(self.real[keep]),
            batch_size=self.batch_size,
            collate_fn=_batched,
            num_workers=self.num_workers,
        )

    @property
    def predict_names(self) -> list[str]:
        """The names of `predict`'s images, in batch order: their numbers (00000, 00001, ...)."""
        return [f"{i:05d}" for i in range(self.predict_size)]

    def predict_dataloader(self) -> DataLoader:
        """Batches of per-image seeds: image i gets the same noise whatever the batch or devices."""
        seeds = [seeding.stream_seed(self.predict_seed, i) for i in range(self.predict_size)]
        return DataLoader(torch.tensor(seeds), batch_size=self.batch_size)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        """To the device, then `prepare_batch` there (the model's own `on_after_batch_transfer`
        then lays the images out in its memory format)."""
        return self.prepare_batch(super().transfer_batch_to_device(batch, device, dataloader_idx))

    def prepare_batch(self, batch: torch.Tensor) -> Any:
        """A loader's batch, on the device, to what the model's steps take: images in [-1, 1],
        augmented in training; `predict`'s seeds as they are."""
        trainer = self.trainer
        if trainer is not None and trainer.predicting:
            return batch  # seeds, not images
        x = to_unit(batch)  # uint8 -> [-1, 1], on the device
        if trainer is not None and trainer.training:
            x = augment_batch_(x, self.augment, self._generator(trainer.global_rank))
            self._steps += 1
        return x

    def reference_images(self) -> torch.Tensor:
        """The paintings that metrics and the memorization report compare with (uint8)."""
        self.setup("fit")
        return self.real

    def _generator(self, rank: int = 0) -> torch.Generator:
        # One stream per (seed, batch, rank): reproducible, and resumable from state_dict.
        return seeding.generator(self.seed, self._steps, rank)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self._steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = state_dict["steps"]
