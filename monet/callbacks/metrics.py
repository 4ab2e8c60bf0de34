"""FID, KID and MiFID (Inception) and the weight-free SWD, every k epochs, for every family."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from monet.callbacks.samples import check_sampling_steps
from monet.errors import ConfigError
from monet.images import to_unit
from monet.metrics import sliced_wasserstein_distance
from monet.metrics.memorization import memorization_report
from monet.models.common import GenerativeModule, datamodule_of
from monet.runtime import seeding


class EvalMetrics(L.Callback):
    """Compare `num_samples` generated images with the real ones at the end of validation.

    The real images are the DataModule's (all 300 paintings), embedded once. Under DDP each
    rank generates its share and torchmetrics syncs the states. SWD (Karras et al. 2018) needs
    no weights and always runs; the Inception metrics need the weights file, which is resolved
    when training starts (explicit `inception_weights`, then MONET_INCEPTION_WEIGHTS, the torch
    hub cache, a download): with none of them the run stops at once, not at the first metric.

    With `sampling_steps`, a diffusion model's metric samples come from DDIM with that many
    steps (grids and `predict` keep the config's sampler): 300 samples of a 300-step DDPM cost
    as much as hundreds of training steps, which would leave little of a short run to training.

    Logged as ``metrics/fid``, ``metrics/kid_mean``, ``metrics/kid_std``, ``metrics/mifid``,
    ``metrics/swd``, ``metrics/near_copies`` (the share of generated images that copy a
    training painting, see `monet.metrics.memorization`) and ``metrics/selection``, what the
    best checkpoint follows: a score that does not reward copies. It is MiFID where Inception
    runs, else SWD x (1 + near_copies / 0.01): every 1% of near-copies costs as much again as
    the distance itself. A ModelCheckpoint can monitor any of them. For a translation model
    (CycleGAN) the untranslated photos are scored too, once, as ``baseline/fid``,
    ``baseline/swd`` and so on: the distance training has to close.
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        num_samples: int = 300,
        inception: bool = True,
        inception_weights: str | None = None,
        swd: bool = True,
        batch_size: int = 50,
        seed: int = 0,
        sampling_steps: int | None = None,
    ) -> None:
        check_sampling_steps("EvalMetrics", sampling_steps)
        self.sampling_steps = sampling_steps
        self.every_n_epochs, self.num_samples = every_n_epochs, num_samples
        self.batch_size, self.seed = batch_size, seed
        self.inception, self.inception_weights, self.swd = inception, inception_weights, swd
        self.metrics = None
        self.baseline: dict[str, float] | None = None  # a translation model's inputs, scored once

    def will_run(self, trainer: L.Trainer) -> bool:
        """Whether this fit reaches an epoch that computes metrics (the demo's few steps do not)."""
        if trainer.fast_dev_run:
            return False
        epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else float("inf")
        if trainer.max_steps not in (None, -1):
            # at least the steps of an epoch: safe
            batches = max(1, len(datamodule_of(trainer).train_dataloader()))
            epochs = min(epochs, -(-trainer.max_steps // batches))
        return epochs >= self.every_n_epochs

    def logged(self) -> set[str]:
        """The keys this callback logs with its settings."""
        keys = {"fid", "kid_mean", "kid_std", "mifid"} if self.inception else set()
        keys |= {"swd", "near_copies"} if self.swd else set()
        return {f"metrics/{k}" for k in keys | ({"selection"} if keys else set())}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for checkpoint in trainer.checkpoint_callbacks:
            monitor = getattr(checkpoint, "monitor", None) or ""
            if monitor.startswith("metrics/") and monitor not in self.logged():
                raise ConfigError(
                    f"a ModelCheckpoint monitors {monitor}, which EvalMetrics does not log with "
                    f"inception={self.inception}, swd={self.swd}: monitor one of "
                    f"{sorted(self.logged()) or 'nothing (turn swd on)'}, e.g. metrics/selection."
                )
        epochs, by_epochs = trainer.max_epochs, trainer.max_steps in (None, -1)
        if by_epochs and epochs not in (None, -1) and epochs < self.every_n_epochs:
            # a warning, not an error: a short trial run (--trainer.max_epochs 2) is common, and
            # it still leaves last.ckpt and its grids
            rank_zero_warn(
                f"EvalMetrics every_n_epochs={self.every_n_epochs} but trainer.max_epochs="
                f"{epochs}: this run writes no metric and no best checkpoint. Lower "
                "every_n_epochs (and the ModelCheckpoint's) or train for more epochs."
            )
        every_val = trainer.check_val_every_n_epoch or 1
        if self.every_n_epochs % every_val:
            raise ConfigError(
                f"EvalMetrics every_n_epochs={self.every_n_epochs} is not a multiple of "
                f"trainer.check_val_every_n_epoch={every_val}: metrics run at the end of "
                "validation, so they would never run. Make it a multiple."
            )
        check_sampling_steps("EvalMetrics", self.sampling_steps, pl_module)
        if self.inception and self.metrics is None and self.will_run(trainer):
            from monet.metrics.fid import GenerativeMetrics as Inception  # torchmetrics: slow

            self.metrics = Inception(self.inception_weights).to(pl_module.device)
            rank_zero_info(f"EvalMetrics: FID/KID/MiFID every {self.every_n_epochs} epochs")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or trainer.fast_dev_run or epoch % self.every_n_epochs:
            return
        real = self._real_share(trainer, pl_module)
        inputs, fake = self._generate_share(trainer, pl_module)
        logs = {f"metrics/{k}": v for k, v in self.scores(trainer, real, fake).items()}
        if pl_module.translates:  # the photos themselves: how far they moved
            if self.baseline is None:
                self.baseline = self.scores(trainer, real, inputs.to(real.device))
            logs |= {f"baseline/{k}": v for k, v in self.baseline.items() if k != "selection"}
        pl_module.log_dict(logs, sync_dist=True)  # plain floats (`scores`)

    def scores(self, trainer: L.Trainer, real: torch.Tensor, fake: torch.Tensor) -> dict:
        """Every metric of `fake` against `real` (this rank's shares), as plain floats."""
        logs = {}
        if self.metrics is not None:
            if self.metrics.num_real == 0:
                for batch in real.split(self.batch_size):
                    self.metrics.update(batch, real=True)
            self.metrics.reset()
            for batch in fake.split(self.batch_size):
                self.metrics.update(batch, real=False)
            logs.update(self.metrics.compute())
        if self.swd:
            swd = sliced_wasserstein_distance(real, fake, seed=self.seed, normalise="reference")
            logs["swd"] = swd.mean
            reference = datamodule_of(trainer).reference_images()
            copies = memorization_report(fake, reference).near_copy_share
            logs["near_copies"] = copies
            logs["selection"] = logs["swd"] * (1 + copies / 0.01)
        if "mifid" in logs:
            logs["selection"] = logs["mifid"]
        return {k: float(v) for k, v in logs.items()}

    def _real_share(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor:
        real = datamodule_of(trainer).reference_images()[trainer.global_rank :: trainer.world_size]
        return to_unit(real.to(pl_module.device))

    def _generate_share(
        self, trainer: L.Trainer, pl_module: GenerativeModule
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the inputs (noise, or photos to translate) and of the images."""
        n = len(range(trainer.global_rank, self.num_samples, trainer.world_size))
        gen = seeding.generator(self.seed, trainer.global_rank)
        noise = pl_module.sample_inputs(n, gen, datamodule_of(trainer))
        fake = [pl_module.generate(z, self.sampling_steps) for z in noise.split(self.batch_size)]
        return noise, torch.cat(fake)
