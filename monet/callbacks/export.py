"""Writing the images `predict` generates: a folder of PNG/JPEG files, or a Kaggle images.zip."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torchvision.io import encode_jpeg, encode_png

from monet.errors import MonetError
from monet.images import to_uint8


def resized_uint8(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """[-1, 1] float (B, 3, h, w) -> uint8 (B, 3, size, size) on the CPU, upsampled bicubically."""
    images = images.float()
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bicubic", antialias=True)
    return to_uint8(images).cpu()


class ImageExport(BasePredictionWriter):
    """Save what ``predict`` generates.

    With `output` ending in ``.zip`` it writes a Kaggle submission (7,000-10,000 JPEGs of
    256x256, checked against the competition's format before writing) and, when the training
    images can be read, a memorization report beside it. Otherwise it writes `output/NNNNN.png`
    (or ``.jpg``), image i from seed i of the DataModule. Under DDP every rank writes its own
    files; rank 0 writes the zip from all ranks' images.
    """

    def __init__(
        self,
        output: str = "exports",
        format: Literal["png", "jpg"] = "png",
        size: int | None = 256,
        quality: int = 95,
        memorization: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output, self.format, self.size = Path(output), format, size
        self.quality, self.memorization = quality, memorization
        self.kaggle = self.output.suffix == ".zip"
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (indices, uint8 images)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: torch.Tensor,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        index = torch.as_tensor(list(batch_indices))
        if self.kaggle:  # kept at the model's size: 7,000 x 3 x 64 x 64 is 86 MB
            self.parts.append((index, resized_uint8(prediction, None)))
            return
        self.output.mkdir(parents=True, exist_ok=True)
        for i, image in zip(index.tolist(), resized_uint8(prediction, self.size)):
            data = encode_png(image) if self.format == "png" else encode_jpeg(image, self.quality)
            (self.output / f"{i:05d}.{self.format}").write_bytes(data.numpy().tobytes())

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.kaggle:
            rank_zero_info(f"ImageExport: wrote images to {self.output}/")
            return
        index = torch.cat([i for i, _ in self.parts]) if self.parts else torch.empty(0).long()
        images = torch.cat([x for _, x in self.parts]) if self.parts else torch.empty(0)
        gathered = trainer.strategy.all_gather((index, images)) if trainer.world_size > 1 else None
        if trainer.global_rank != 0:
            return
        if gathered is not None:
            index, images = gathered[0].flatten(0, 1), gathered[1].flatten(0, 1)
        index, order = index.sort()
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]  # DistributedSampler pads with repeats: drop them
        self.write_zip(trainer, images[order][first])

    def write_zip(self, trainer: L.Trainer, images: torch.Tensor) -> None:
        from monet.export import write_submission

        training = self._training_images(trainer)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        result = write_submission(
            images,
            self.output,
            quality=self.quality,
            training=training,
            size=self.size or 256,
            progress=True,
        )
        rank_zero_info(f"ImageExport: wrote {result.count} images to {result.path}")
        if result.report is not None:
            rank_zero_info(f"ImageExport: memorization: {result.report.summary()}")

    def _training_images(self, trainer: L.Trainer) -> torch.Tensor | None:
        datamodule = trainer.datamodule
        if not self.memorization or datamodule is None:
            return None
        try:
            return datamodule.reference_images()
        except MonetError as err:  # no data here: the zip is still worth writing
            rank_zero_info(f"ImageExport: no memorization report ({err})")
            return None
