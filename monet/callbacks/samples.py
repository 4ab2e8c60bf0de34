"""Sample grids from fixed noise: the same noise every time, so the grids show training progress."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from PIL import Image
from torchvision.utils import save_image

from monet.rundir import run_dir


class SampleGrid(L.Callback):
    """Write a PNG grid of images generated from fixed noise every `every_n_epochs` epochs.

    The model provides ``sample_noise(n, generator)`` and ``generate(noise)`` (images in
    [-1, 1]). Grids go to ``<run dir>/samples/epoch=NNNN-step=NNNNNNN.png`` and to every logger
    that takes images (W&B); a run that stops between two grids writes one at the end, and then
    ``<run dir>/progress.gif`` animates all of them: the same noise over training. Rank 0 only.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 64,
        nrow: int = 8,
        seed: int = 1234,
        gif_ms_per_frame: int = 400,
    ) -> None:
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.nrow, self.seed = nrow, seed
        self.gif_ms_per_frame = gif_ms_per_frame
        self.noise: torch.Tensor | None = None
        self.last_step: int | None = None  # global step of the newest grid

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.noise is None:
            gen = torch.Generator().manual_seed(self.seed)
            self.noise = pl_module.sample_noise(self.num_samples, generator=gen)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 and not trainer.fast_dev_run:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # fast_dev_run is a smoke test that writes nothing (Lightning drops its loggers and
        # checkpoints too); a diffusion grid would cost a full sampling run.
        if trainer.fast_dev_run:
            return
        if self.last_step != trainer.global_step:
            self.write(trainer, pl_module)
        self.write_gif(trainer)

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        # a translation model shows each input beside its output (photo | painting)
        images = getattr(pl_module, "grid_images", pl_module.generate)(self.noise)
        folder = run_dir(trainer) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch={trainer.current_epoch:04d}-step={trainer.global_step:07d}.png"
        save_image((images + 1) / 2, path, nrow=self.nrow)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="samples", images=[str(path)], step=trainer.global_step)
        self.last_step = trainer.global_step
        rank_zero_info(f"SampleGrid: wrote {path}")
        return path

    @rank_zero_only
    def write_gif(self, trainer: L.Trainer) -> Path | None:
        """All grids of the run, in order, as one animated GIF."""
        grids = sorted((run_dir(trainer) / "samples").glob("epoch=*-step=*.png"))
        if not grids:
            return None
        frames = [Image.open(p).convert("RGB") for p in grids]
        path = run_dir(trainer) / "progress.gif"
        frames[0].save(
            path, save_all=True, append_images=frames[1:], loop=0, duration=self.gif_ms_per_frame
        )
        return path

    def state_dict(self) -> dict:
        return {"noise": self.noise, "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.noise, self.last_step = state_dict["noise"], state_dict["last_step"]
