"""Sample grids from fixed noise: the same noise every time, so the grids show training progress."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from PIL import Image
from torchvision.utils import save_image

from monet.errors import ConfigError
from monet.models.common import GenerativeModule, datamodule_of
from monet.runtime import seeding
from monet.runtime.rundir import run_dir


def check_sampling_steps(
    owner: str, steps: int | None, module: GenerativeModule | None = None
) -> None:
    """`sampling_steps` of a callback: a positive count, and only for an iterative sampler."""
    if steps is not None and steps < 1:
        raise ConfigError(f"{owner} sampling_steps={steps} must be >= 1 or null.")
    if steps is not None and module is not None and not module.iterative:
        raise ConfigError(
            f"{owner} sampling_steps is for diffusion models (DDIM steps of their samples); "
            f"{type(module).__name__} samples in one step: set it to null."
        )


class SampleGrid(L.Callback):
    """Write a PNG grid of images generated from fixed noise every `every_n_epochs` epochs.

    The model provides ``sample_inputs(n, generator, datamodule)`` (noise, or the
    DataModule's photos for a translating model) and ``grid_images(inputs, steps)`` (images
    in [-1, 1]). Grids go to ``<run dir>/samples/epoch=NNNN-step=NNNNNNN.png`` and to
    every logger that takes images (W&B); a run that stops between two grids writes one at the
    end, and then ``<run dir>/progress.gif`` animates all of them: the same noise over training.
    Rank 0 only.

    With `sampling_steps`, a diffusion model's grids come from DDIM in that many steps: a
    300-step DDPM grid at the end of a run would overrun its time limit by minutes on a CPU.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 64,
        nrow: int = 8,
        seed: int = 1234,
        gif_ms_per_frame: int = 400,
        sampling_steps: int | None = None,
    ) -> None:
        check_sampling_steps("SampleGrid", sampling_steps)
        self.sampling_steps = sampling_steps
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.nrow, self.seed = nrow, seed
        self.gif_ms_per_frame = gif_ms_per_frame
        self.noise: torch.Tensor | None = None
        self.last_step: int | None = None  # global step of the newest grid

    def on_fit_start(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        check_sampling_steps("SampleGrid", self.sampling_steps, pl_module)
        if self.noise is None:
            gen = seeding.generator(self.seed)
            self.noise = pl_module.sample_inputs(self.num_samples, gen, datamodule_of(trainer))

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
        images = pl_module.grid_images(self.noise, self.sampling_steps)
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
