"""Sample grids from fixed noise: the same noise every time, so the grids show training progress."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torchvision.utils import save_image


class SampleGrid(L.Callback):
    """Write a PNG grid of images generated from fixed noise every `every_n_epochs` epochs.

    The model provides ``sample_noise(n, generator)`` and ``generate(noise)`` (images in
    [-1, 1]). Grids go to ``<run dir>/samples/epoch=NNNN-step=NNNNNNN.png``; a run that stops
    between two grids (``max_steps``) writes one at the end as well.
    """

    def __init__(
        self, every_n_epochs: int = 1, num_samples: int = 64, nrow: int = 8, seed: int = 1234
    ) -> None:
        self.every_n_epochs, self.num_samples, self.nrow, self.seed = (
            every_n_epochs,
            num_samples,
            nrow,
            seed,
        )
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
        if self.last_step != trainer.global_step and not trainer.fast_dev_run:
            self.write(trainer, pl_module)

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        images = pl_module.generate(self.noise)
        path = Path(trainer.log_dir or trainer.default_root_dir) / "samples"
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"epoch={trainer.current_epoch:04d}-step={trainer.global_step:07d}.png"
        save_image((images + 1) / 2, path, nrow=self.nrow)
        rank_zero_info(f"SampleGrid: wrote {path}")
        self.last_step = trainer.global_step
        return path

    def state_dict(self) -> dict:
        return {"noise": self.noise, "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.noise, self.last_step = state_dict["noise"], state_dict["last_step"]
