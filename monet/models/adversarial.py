"""What the adversarial families (GAN, CycleGAN, CUT) share: manual optimization of a generator
that paints against critics, two optimizers from the YAML, DiffAugment and a generator EMA; and
what the translating ones (CycleGAN, CUT) share: photos in, photo | painting grids."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from monet.models.common import (
    GenerativeModule,
    TranslationData,
    build_optimizer,
    lacks,
    no_photos,
)
from monet.models.diffaugment import diff_augment, parse_policy
from monet.models.ema import EMA, AveragedNetwork
from monet.nets.common import eval_mode


class Adversarial(GenerativeModule):
    """A `generator` that paints (its EMA copy samples when the YAML has one), critics, the
    generators' and the critics' optimizers (optionally with LR schedules), DiffAugment, and
    manual optimization. `generator_steps` counts generator updates (saved in checkpoints).

    Args:
        generator: the network that paints.
        optimizer: the generators' optimizer from the YAML (the family has a default).
        critic_optimizer: the critics' optimizer; by default the generators'.
        lr_scheduler: an optional schedule, one per optimizer.
        diffaugment: DiffAugment policy, e.g. ``color,translation,cutout``; null is off.
        ema: how an averaged copy of the generator follows it; null is off.
        standing: whether the generator takes noise, so ``ema.buffers: standing`` can
            recompute its BatchNorm statistics.
        channels_last, compile: NHWC memory format; `torch.compile` (in place).
    """

    averaged = "generator"
    ddp_unused_parameters = True  # the CLI picks ddp_find_unused_parameters_true under DDP

    def __init__(
        self,
        generator: nn.Module,
        optimizer: OptimizerCallable | None,
        critic_optimizer: OptimizerCallable | None,
        lr_scheduler: LRSchedulerCallable | None,
        diffaugment: str | None,
        ema: EMA | None,
        standing: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # the family's own init arguments too (Lightning reads every __init__ frame of self);
        # networks, optimizers and EMA settings are in the run's config.yaml
        self.save_hyperparameters(
            ignore=[
                "generator",
                "critic",
                "optimizer",
                "critic_optimizer",
                "lr_scheduler",
                "ema",
                "standing",
            ]
        )
        self.channels_last, self.compile = channels_last, compile
        self.generator = generator
        self.optimizer, self.critic_optimizer = optimizer, critic_optimizer or optimizer
        self.lr_scheduler = lr_scheduler
        self.policy = parse_policy(diffaugment)
        self.ema = AveragedNetwork(generator, ema, standing) if ema is not None else None
        self.generator_steps = 0
        self.automatic_optimization = False

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Images in [-1, 1] from `inputs` in one pass of the sampling generator (eval mode)."""
        with eval_mode(self.sampling_net) as net:  # every submodule gets its own mode back
            return net(inputs.to(self.device)).float()

    def two_optimizers(self, default: Any, generators: Any, critics: Any) -> Any:
        """The generators' and the critics' optimizers (`default` where the YAML has none),
        with their schedules."""
        optimizers = [
            build_optimizer(self.optimizer or default, generators, "optimizer"),
            build_optimizer(self.critic_optimizer or default, critics, "critic_optimizer"),
        ]
        if self.lr_scheduler is None:
            return optimizers
        return optimizers, [self.lr_scheduler(opt) for opt in optimizers]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment, the same policy for real and fake images, in both steps."""
        return diff_augment(x, self.policy) if self.policy else x

    def backward_outside_autocast(self, loss: torch.Tensor) -> None:
        """`manual_backward` with autocast off, as torch's AMP docs advise.

        Lightning runs the whole manual-optimization `training_step` under autocast, backward
        included, where autocast would also recast the matmuls inside backward formulas. The
        forward pass still decides the gradients' dtypes, and 16-mixed loss scaling is
        unchanged.
        """
        with torch.autocast(self.device.type, enabled=False):
            self.manual_backward(loss)

    def generator_stepped(self, batch_size: int) -> None:
        """After each generator update: count it and step the EMA (`batch_size` per device)."""
        self.generator_steps += 1
        self.update_ema(batch_size)


class Translator(Adversarial):
    """An adversarial family that paints photos (CycleGAN, CUT): its inputs are photos of the
    DataModule the caller passes, grids show each photo beside its painting, `predict`
    translates the photos its DataModule gives, and training takes painting/photo pairs."""

    translates = True  # inputs are photos: metrics report the untranslated photos beside

    def sample_inputs(
        self, n: int, generator: torch.Generator | None = None, datamodule: Any = None
    ) -> torch.Tensor:
        """`n` photos of `datamodule` (different ones for different generators), in [-1, 1]."""
        if datamodule is None or lacks(datamodule, TranslationData):
            raise no_photos(self, datamodule)
        return datamodule.sample_photos(n, generator=generator)

    def grid_images(self, photos: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Photo, painting, photo, painting, ...: each translation beside its photo."""
        paintings = self.generate(photos)
        return torch.stack([photos.to(paintings), paintings], dim=1).flatten(0, 1)

    def predict_step(self, photos: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.generate(photos)

    def pairs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(paintings, photos) of a training batch, or a one-line error for a batch of one."""
        if not isinstance(batch, dict):  # batches of a loader given without a DataModule
            raise no_photos(self, None)
        return batch["monet"], batch["photo"]

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
