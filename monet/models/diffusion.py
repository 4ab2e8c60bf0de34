"""The diffusion family: one LightningModule for every denoiser, automatic optimization."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from monet.diffusion import EDMDiffusion, GaussianDiffusion, check_sampler, sample
from monet.errors import ConfigError
from monet.models.common import (
    GenerativeModule,
    attached_trainer,
    build_optimizer,
    check_range,
)
from monet.models.ema import EMA, AveragedNetwork
from monet.runtime import seeding

DEFAULT_EMA = EMA(half_life=18_000, rampup=0.05)  # 0.995 a step at batch 128, with a ramp-up


class Diffusion(GenerativeModule):
    """Trains `denoiser` under `process`; samples with an EMA copy of it.

    The network, the noising process and the sampler are separate pieces: the process and the
    sampler take the network as an argument, so the EMA weights are swapped in for sampling and
    validation without touching either.

    Args:
        denoiser: any module with ``forward(x, t)``; it should carry ``image_size``.
        process: the discrete Gaussian diffusion (schedule, T, objective, loss) or EDM-form
            training (`EDMDiffusion`: preconditioning, log-normal sigmas).
        sampler: ``ddpm`` (all T steps) and ``ddim`` on the discrete schedule; ``heun`` (EDM's
            2nd-order sampler, 2 x steps - 1 network evaluations) and ``dpmpp_2m``
            (DPM-Solver++(2M), one a step) on Karras sigmas, for either process.
        sampling_steps: the solver's steps (ignored by DDPM); grids and metrics use the same
            sampler and steps unless their callback sets other steps.
        eta: DDIM's noise scale: 0 is deterministic, 1 is DDPM-like.
        churn: Heun's stochastic churn (EDM's S_churn): 0 is deterministic.
        sample_batch_size: images denoised at a time when sampling.
        ema: how the EMA copy of the denoiser that samples follows it (a half-life in
            images, or the library's per-update decay and cadence); null turns EMA off.
        optimizer: the optimizer, from the YAML (class_path + init_args).
        lr_scheduler: an optional LR schedule, stepped every optimizer step.
        channels_last: NHWC memory format for the networks and batches.
        compile: `torch.compile` the networks (in place; checkpoints keep their keys).
    """

    networks = ("denoiser",)
    averaged = "denoiser"
    iterative = True

    def __init__(
        self,
        denoiser: nn.Module,
        process: GaussianDiffusion | EDMDiffusion | None = None,
        sampler: Literal["ddpm", "ddim", "heun", "dpmpp_2m"] = "ddpm",
        sampling_steps: int | None = None,
        eta: float = 0.0,
        churn: float = 0.0,
        sample_batch_size: int = 64,
        ema: EMA | None = DEFAULT_EMA,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last, self.compile = channels_last, compile
        self.save_hyperparameters(
            ignore=["denoiser", "process", "optimizer", "lr_scheduler", "ema"]
        )  # the EMA settings are in the run's config.yaml; checkpoints hold plain types
        self.denoiser = denoiser
        self.process = process if process is not None else GaussianDiffusion()
        try:
            check_sampler(self.process, sampler, sampling_steps)
        except ConfigError as err:
            raise ConfigError(f"model.init_args.sampler / sampling_steps: {err}") from None
        check_range("eta", eta, 0.0)
        check_range("churn", churn, 0.0)
        check_range("sample_batch_size", sample_batch_size, 1)
        self.sampler, self.sampling_steps, self.eta = sampler, sampling_steps, eta
        self.churn = churn
        self.sample_batch_size = sample_batch_size
        self.ema = AveragedNetwork(denoiser, ema) if ema is not None else None
        self.batch_size = 1  # images per device in the latest training batch
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler

    # -- sampling interface used by callbacks ---------------------------------------------------
    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        size = self.denoiser.image_size
        channels = getattr(self.denoiser, "channels", 3)
        return torch.randn(n, channels, size, size, generator=generator)

    @torch.no_grad()
    def generate(
        self, noise: torch.Tensor, steps: int | None = None, progress: bool = False
    ) -> torch.Tensor:
        """Images in [-1, 1] from starting noise x_T, with the EMA weights where present, with
        the config's sampler in its steps, or in `steps` where given (metrics, grids; DDPM,
        which always takes all T steps, is then replaced by DDIM).

        The per-step noise of DDPM (and DDIM with eta > 0) comes from one generator per image,
        seeded from that image's x_T: image i depends on its own x_T alone, whatever the batch
        or devices, and sampling never draws from the training's random streams.
        """
        sampler = "ddim" if steps and self.sampler == "ddpm" else self.sampler
        steps = None if sampler == "ddpm" else steps or self.sampling_steps
        generators = [torch.Generator().manual_seed(seeding.tensor_seed(x)) for x in noise.cpu()]
        # SIGTERM (Lightning's flag) stops sampling between two steps
        trainer = attached_trainer(self)
        x = sample(
            self.process,
            self.sampling_net,
            noise.to(self.device),
            sampler,
            steps,
            self.eta,
            self.sample_batch_size,
            progress,
            generators,
            stop=(lambda: trainer.received_sigterm) if trainer is not None else None,
            churn=self.churn,
        )
        return x.float().clamp(-1, 1)

    # -- training -------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer, self.denoiser.parameters(), "optimizer")
        if self.lr_scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.lr_scheduler(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def training_step(self, x0: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.batch_size = len(x0)
        loss = self.process.loss(self.denoiser, x0)
        self.log("train/loss", loss.detach())
        return loss

    def validation_step(self, x0: torch.Tensor, batch_idx: int) -> None:
        # The same noise levels and noise for a batch every time: val/loss moves with the weights.
        gen = seeding.generator(batch_idx, device=self.device)
        loss = self.process.loss(self.sampling_net, x0, generator=gen)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.batch_size)  # once per optimizer step, whatever the accumulation
