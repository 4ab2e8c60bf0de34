"""Two domains for translation: Monet paintings and photos, unpaired, each shuffled on its own."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from monet.data.augment import Augment, augment_batch_
from monet.data.datamodule import MonetDataModule, _batched, _Images
from monet.errors import ConfigError
from monet.images import to_unit
from monet.runtime import seeding

DOMAINS = ("monet", "photo")


class _Steps(Dataset):
    """`length` positions a epoch; a batch of them is only a clock: the images are drawn from
    each domain's own stream after the transfer (`UnpairedDataModule.prepare_batch`)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return torch.tensor(indices)


class UnpairedDataModule(MonetDataModule):
    """Batches of Monet paintings and photos for unpaired translation (CycleGAN).

    Training batches are ``{"monet": x, "photo": y}``, both (B, 3, S, S) in [-1, 1] on the
    device. Each domain is read from its own stream: epoch-long random permutations of that
    domain, one after the other, seeded by (seed, domain, rank, round), so the shorter domain
    repeats (each painting about 23 times in an epoch of the 7,038 Kaggle photos), the pairs
    change every round, and a resumed run draws the same images as an unbroken one. An epoch
    is `epoch_size` pairs, by default the size of the larger domain. Both domains go through
    the decode-once cache of `MonetDataModule` (with `cache_dir`, a memory-mapped file each),
    with its CRC checks and errors; the augmentations are applied to both.

    Validation batches and the model's fixed inputs (grids, metrics) are photos; `real` (what
    metrics and the memorization report compare with) are the paintings. ``predict`` reads the
    photos of `predict_root` (default: the photo domain of `photo_root`): any folder or zip
    of images in a format PIL reads, at any depth, or one image, at `predict_image_size` px,
    in path order, leaving out `exclude` (the export's own output); `predict_names` are their
    paths below the root, for the outputs' names.

    Args (beyond MonetDataModule's):
        photo_root: where the photos are (default: `root`, the Kaggle layout holds both).
        photo_files: an explicit list of photo files instead.
        epoch_size: pairs an epoch (null: the larger domain's size).
        predict_root: the photos ``predict`` translates, a folder, a zip or one image (null:
            the training photos).
        predict_image_size: the side at which ``predict`` translates (the generators are
            fully convolutional: a 128 px model translates 256 px photos).
    """

    def __init__(
        self,
        root: str | None = "data",
        photo_root: str | None = None,
        format: Literal["auto", "tfrecord", "jpg"] = "auto",
        files: list[str] | None = None,
        photo_files: list[str] | None = None,
        image_size: int = 128,
        batch_size: int = 1,
        num_workers: int = 0,
        augment: Augment | None = None,
        cache_dir: str | None = None,
        seed: int = 0,
        val_size: int | None = 64,
        epoch_size: int | None = None,
        predict_root: str | None = None,
        predict_image_size: int = 256,
    ) -> None:
        augment = augment or Augment()
        if augment.five_crop.enabled:
            raise ConfigError(
                "data.augment.five_crop is for the 300 paintings alone (it keeps five copies "
                "of every image in memory): turn it off for translation."
            )
        super().__init__(
            root, "monet", format, files, image_size, batch_size, num_workers, augment,
            cache_dir, seed, val_size,
        )  # fmt: skip
        if epoch_size is not None and epoch_size < batch_size:
            raise ConfigError(f"data.epoch_size={epoch_size} must be at least the batch size.")
        self.photo = MonetDataModule(
            photo_root or root, "photo", format, photo_files, image_size, batch_size, 0,
            augment, cache_dir, seed, val_size,
        )  # fmt: skip
        self.epoch_size, self.predict_image_size = epoch_size, predict_image_size
        self.predict_root = predict_root
        self._predict: MonetDataModule | None = None

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if self._predict is not None:  # the CLI reads the photos before predict starts
                return
            source = self.predict_root or self.photo.root
            files = None if self.predict_root else self.photo.files
            self._predict = MonetDataModule(
                source, "photo", self.format, files, self.predict_image_size,
                self.batch_size, 0, Augment(), self.cache_dir, val_size=None,
            )  # fmt: skip
            self._predict.exclude = self.exclude  # a previous run's paintings are no photos
            self._predict.setup("fit")
            return
        super().setup(stage)
        self.photo.setup(stage)
        rank_zero_info(
            f"UnpairedDataModule: an epoch is {self.epoch_length} pairs "
            f"({len(self.train_images)} paintings, {len(self.photo.train_images)} photos)"
        )

    @property
    def predict_names(self) -> list[str]:
        """Each photo's path below `predict_root` (a TFRecord image: its name), in batch order."""
        return self._predict.paths

    @property
    def epoch_length(self) -> int:
        return self.epoch_size or max(len(self.train_images), len(self.photo.train_images))

    def reference_images(self) -> torch.Tensor:
        MonetDataModule.setup(self, "fit")  # the paintings only: no need to decode the photos
        return self.real

    def photos(self) -> torch.Tensor:
        """All photos at the training size, uint8."""
        return self.photo.real

    def sample_photos(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` photos (different ones for different generators), in [-1, 1]: a translating
        model's inputs of grids and metrics (`GenerativeModule.sample_inputs`)."""
        photos = self.photos()
        index = torch.randperm(len(photos), generator=generator)[:n]
        if n > len(photos):  # fewer photos than asked: repeat them
            index = index.repeat(-(-n // len(photos)))[:n]
        return to_unit(photos[index])

    # -- loaders ---------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _Steps(self.epoch_length),
            batch_size=self.batch_size,
            drop_last=True,
            collate_fn=_batched,
        )

    def val_dataloader(self) -> DataLoader:
        return self.photo.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        """Every photo to translate, in file order, uint8 at `predict_image_size`."""
        return DataLoader(
            _Images(self._predict.real), batch_size=self.batch_size, collate_fn=_batched
        )

    def prepare_batch(self, batch: torch.Tensor) -> Any:
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return to_unit(batch)  # photos to validate or translate: [-1, 1]
        pairs = self.pairs(self._steps, trainer.global_rank, len(batch), batch.device)
        self._steps += 1
        return pairs

    def pairs(self, step: int, rank: int, size: int, device: Any) -> dict[str, torch.Tensor]:
        """Training batch `step` of rank `rank`: `size` augmented images of each domain."""
        out = {}
        for d, name in enumerate(DOMAINS):
            images = self.train_images if name == "monet" else self.photo.train_images
            index = self._stream(d, step, rank, len(images), size)
            x = to_unit(images.index_select(0, index).to(device, non_blocking=True))
            gen = seeding.generator(self.seed, step, rank, d, 1)
            out[name] = augment_batch_(x, self.augment, gen)
        return out

    def _stream(self, domain: int, step: int, rank: int, n: int, b: int) -> torch.Tensor:
        """Positions [step * b, (step + 1) * b) of this domain's stream of permutations."""
        start = step * b
        rounds = range(start // n, (start + b - 1) // n + 1)
        gens = [seeding.generator(self.seed, domain, rank, r) for r in rounds]
        perms = [torch.randperm(n, generator=g) for g in gens]
        return torch.cat(perms)[start - rounds[0] * n :][:b]
