"""Writing the images `predict` generates: a folder of PNG/JPEG files, or a Kaggle images.zip
(written and checked by monet/callbacks/submission.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torchvision.io import encode_jpeg, encode_png

from monet.callbacks.submission import KAGGLE_COUNT, KAGGLE_SIZE, write_submission
from monet.data.sources import IMAGE_SUFFIXES
from monet.errors import ConfigError, Interrupted, MonetError
from monet.images import resize, to_uint8
from monet.models.common import GenerativeData, datamodule_of

OTHER_ARCHIVES = (".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")  # not what predict writes


def output_names(names: list[str], suffix: str) -> list[str]:
    """One output file per input, named after it: ``beach/IMG_3.jpg`` -> ``beach/IMG_3.png``.

    Inputs that would meet keep their own suffix (``a.jpg`` -> ``a.jpg.png``, ``a.png`` ->
    ``a.png.png``); equal names (TFRecord images) are numbered. Names stay below the output
    folder: ``..`` and absolute parts of zip members are dropped.
    """

    def clean(name: str) -> str:
        parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".", "..")]
        return "/".join(parts) or "image"

    def stem(name: str) -> str:
        path = PurePosixPath(name)
        return str(path.with_suffix("")) if path.suffix.lower() in IMAGE_SUFFIXES else name

    names = [clean(n) for n in names]
    first = [f"{stem(n)}.{suffix}" for n in names]
    count: dict[str, int] = {}
    for f in first:
        count[f.lower()] = count.get(f.lower(), 0) + 1  # a case-insensitive disk too
    out, taken = [], set()
    for f, n in zip(first, names):
        name, k = (f if count[f.lower()] == 1 else f"{n}.{suffix}"), 1
        while name.lower() in taken:
            name, k = f"{stem(f)}-{k}.{suffix}", k + 1
        taken.add(name.lower())
        out.append(name)
    return out


class ImageExport(BasePredictionWriter):
    """Save what ``predict`` generates.

    With `output` ending in ``.zip`` it writes a Kaggle submission (7,000-10,000 JPEGs of
    256x256, checked against the competition's format before writing) and, when the training
    images can be read, a memorization report beside it. Otherwise it writes a folder: a
    translated photo keeps its path below `predict_root` (``beach/IMG_3.jpg`` ->
    ``output/beach/IMG_3.png``); a generated image i (from seed i) is ``output/NNNNN.png``.
    An output that is a file, a folder that cannot be written, or existing files it would
    replace are refused before anything is generated (`overwrite` replaces them). Under DDP
    every rank writes its own files; rank 0 writes the zip from all ranks' images.

    It reports images/s every `report_seconds` and at the end, with what a full Kaggle
    submission (7,000 images) takes at that rate. On SIGTERM (a cluster's time limit) it stops
    after the batch being written, or a diffusion sampler between two steps: every file
    written is whole, and the message says how many there are (a zip is only written whole).
    """

    KAGGLE_IMAGES = 7_000

    def __init__(
        self,
        output: str = "exports",
        format: Literal["png", "jpg"] = "png",
        size: int | None = 256,
        quality: int = 95,
        memorization: bool = True,
        overwrite: bool = False,
        report_seconds: float = 30.0,
    ) -> None:
        super().__init__(write_interval="batch")
        self.report_seconds = report_seconds
        self.done, self.total, self._start, self._reported = 0, 0, 0.0, 0.0
        self.output, self.format, self.size = Path(output), format, size
        self.quality, self.memorization, self.overwrite = quality, memorization, overwrite
        self.kaggle = self.output.suffix == ".zip"
        self.parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (indices, uint8 images)
        self.files: list[str] | None = None  # each image's file below `output`
        self.check_options()

    def check_options(self) -> None:
        """Refuse, in one line, a size, quality or output that cannot work, before any run."""
        out, suffix = self.output, self.output.suffix.lower()
        if self.size is not None and self.size < 1:
            raise ConfigError(
                f"--export.size {self.size}: give the side of the exported images in pixels "
                "(1 or more; 256 for Kaggle), or null for the model's own size."
            )
        if not 1 <= self.quality <= 100:
            raise ConfigError(
                f"--export.quality {self.quality}: JPEG quality is between 1 and 100 (95 keeps "
                "the detail; Kaggle takes any)."
            )
        if self.kaggle and self.size not in (None, KAGGLE_SIZE):
            raise ConfigError(
                f"--export.size {self.size}: a Kaggle zip ({out}) holds {KAGGLE_SIZE}x"
                f"{KAGGLE_SIZE} images; drop --export.size, or export to a folder (an "
                "--export.output that does not end in .zip)."
            )
        if not self.kaggle and suffix in (*IMAGE_SUFFIXES, *OTHER_ARCHIVES) and not out.exists():
            raise ConfigError(
                f"--export.output {out} names a {suffix} file, but predict writes a folder of "
                "images or a Kaggle .zip; give a folder (painted/) or a path ending in .zip."
            )

    @property
    def writes(self) -> tuple[Path, ...]:
        """The paths this export writes (and that `predict` must not read as inputs)."""
        report = self.output.with_name(f"{self.output.stem}.memorization.json")
        return (self.output, report) if self.kaggle else (self.output,)

    def check_output(self) -> None:
        """Refuse, in one line, an output that cannot be written or would replace a file."""
        out, fix = self.output, "choose another --export.output"
        if self.kaggle and out.is_dir():
            raise ConfigError(f"--export.output {out} is a folder, not a zip file; {fix}.")
        if self.kaggle and out.exists() and not self.overwrite:
            raise ConfigError(
                f"--export.output {out} already exists; {fix}, or add --export.overwrite true "
                "to replace it."
            )
        if not self.kaggle and out.exists() and not out.is_dir():
            raise ConfigError(
                f"--export.output {out} is a file, not a folder; {fix}: a folder (created if "
                "missing) or a path ending in .zip."
            )
        folder = out.parent if self.kaggle else out
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"--export.output {out}: {existing} is a file, not a folder; {fix}.")
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as err:
            raise ConfigError(
                f"--export.output {out}: {existing} cannot be written ({err.strerror}); {fix}."
            ) from None

    def plan(self, datamodule: GenerativeData | None) -> None:
        """Name every file and check the plan before the first image: a Kaggle zip's count,
        and files that exist already (nothing is replaced unasked). `datamodule` is set up for
        predict (None: loaders given to the Trainer, whose images are numbered as they come)."""
        # image numbers, or the photos a CycleGAN translates
        names = datamodule.predict_names if datamodule is not None else None
        self.total = len(names or [])
        lo, hi = KAGGLE_COUNT
        if self.kaggle and names is not None and not lo <= self.total <= hi:
            raise ConfigError(
                f"--export.output {self.output}: a Kaggle submission holds {lo:,}-{hi:,} images, "
                f"and this predict makes {self.total:,}; generate {lo:,} (--data.predict_size "
                f"{lo}) or translate that many photos, or export to a folder instead."
            )
        if self.kaggle:
            return
        self.files = None if names is None else output_names(names, self.format)
        there = [f for f in self.files or [] if (self.output / f).exists()]
        if there and not self.overwrite:
            shown = ", ".join(there[:3]) + (", ..." if len(there) > 3 else "")
            raise ConfigError(
                f"--export.output {self.output} already holds {len(there)} of the "
                f"{len(self.files)} files to write ({shown}); choose another --export.output, "
                "or add --export.overwrite true to replace them."
            )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Before predicting: check the output and name every file, so nothing is replaced."""
        if stage != "predict":
            return
        self.check_output()
        self.plan(datamodule_of(trainer))
        if not self.kaggle:
            self.output.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("image_export_checked")  # every rank checked before any writes

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
            self.parts.append((index, to_uint8(prediction).cpu()))  # resized as it is zipped
        else:
            self.write_files(index.tolist(), resize(to_uint8(prediction).cpu(), self.size))
        self.done += len(index) * trainer.world_size
        if time.monotonic() - self._reported > self.report_seconds:
            self._reported = time.monotonic()
            rank_zero_info(f"ImageExport: {self.done} of {self.total} images; {self.rate()}")
        if trainer.received_sigterm:
            raise Interrupted("predict stopped by SIGTERM")

    def write_files(self, indices: list[int], images: torch.Tensor) -> None:
        for i, image in zip(indices, images):
            data = encode_png(image) if self.format == "png" else encode_jpeg(image, self.quality)
            path = self.output / (self.files[i] if self.files else f"{i:05d}.{self.format}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.numpy().tobytes())

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._reported = time.monotonic()

    def rate(self) -> str:
        """Images/s so far, the time left, and what a Kaggle submission would take."""
        per_s = self.done / max(time.monotonic() - self._start, 1e-9)
        left = (self.total - self.done) / per_s if per_s else float("inf")
        kaggle = self.KAGGLE_IMAGES / per_s / 60 if per_s else float("inf")
        return (
            f"{per_s:.2f} images/s, about {left / 60:.1f} min left; "
            f"{self.KAGGLE_IMAGES:,} images (a Kaggle submission) take about {kaggle:.0f} min"
        )

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, Interrupted) or not trainer.predicting:
            return
        kept = (
            "no zip written (a submission is written whole)"
            if self.kaggle
            else (
                f"the {self.done} images in {self.output}/ are complete; predict again into "
                "another --export.output (or with --export.overwrite true) for all of them"
            )
        )
        rank_zero_info(f"ImageExport: stopped after {self.done} of {self.total} images: {kept}")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(f"ImageExport: {self.done} images in {self.rate()}")
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
        datamodule = datamodule_of(trainer)
        if not self.memorization or datamodule is None:
            return None
        try:
            return datamodule.reference_images()
        except MonetError as err:  # no data here: the zip is still worth writing
            rank_zero_info(f"ImageExport: no memorization report ({err})")
            return None
