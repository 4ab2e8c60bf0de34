"""Photo -> Monet translation: CUT and FastCUT (Park et al. 2020, "Contrastive Learning for
Unpaired Image-to-Image Translation"), manual optimization."""

from __future__ import annotations

import functools
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from monet.errors import ConfigError
from monet.models.adversarial import Translator
from monet.models.common import check_range
from monet.models.ema import EMA
from monet.models.losses import GanLoss, critic_loss, generator_loss, patch_nce_loss
from monet.nets.common import eval_mode
from monet.nets.cut import PatchHead, layer_features
from monet.runtime import seeding

NCE_STREAM = 7  # the patch locations' random stream (seeded by step and rank: exact resume)


class CUT(Translator):
    """One photo -> Monet `generator` and one Monet `critic`; instead of CycleGAN's inverse
    generator and cycle loss, PatchNCE keeps each output patch tied to its input patch.

    Each training batch ``{"monet": x, "photo": y}`` passes the photos (and, with
    `nce_identity`, the paintings) through the generator once, keeping the features of the
    `nce_layers` of its encoder; the critic takes a step on paintings against the fresh
    translations; then the generator and the `head` take one step on the adversarial loss +
    `nce_weight` x PatchNCE, which encodes the translations with the same encoder and asks each
    of `num_patches` sampled patches per layer to find its input patch among the others of
    its image (temperature `nce_temperature`). With `nce_identity` (CUT) the paintings and
    their own translations count too (the paper's NCE_Y, averaged with NCE_X); FastCUT is
    `nce_identity: false`, `nce_weight: 10`.

    Args:
        generator: photo -> Monet network with its layers in ``generator.net`` (an
            ``nn.Sequential``, as ``monet.nets.ResnetGenerator``).
        critic: the Monet discriminator (raw patch scores).
        loss: the adversarial loss; ``lsgan`` as in the paper.
        nce_weight: lambda_NCE (CUT 1, FastCUT 10).
        nce_identity: the identity NCE term on paintings (CUT true, FastCUT false).
        nce_layers: indices into ``generator.net`` whose outputs are compared. The paper's
            0, 4, 8, 12, 16 of its 9-block generator (the padded input, the two downsampling
            convs, the 1st and 5th residual blocks) are 0, 4, 7, 10, 14 of ResnetGenerator.
        num_patches: patch locations sampled per layer (256).
        nce_temperature: tau (0.07).
        head_features: width of the MLP head (256).
        optimizer: the generator's and head's optimizer (default Adam 2e-4, betas (0.5, 0.999)).
        critic_optimizer: the critic's optimizer (default: the generator's).
        lr_scheduler: e.g. ``monet.models.LinearDecay``, stepped once an epoch.
        diffaugment: DiffAugment policy on the critic's inputs (real and fake alike).
        ema: an EMA copy of the generator that translates (null is off).
        channels_last, compile: as for the other families.
    """

    networks = ("generator", "critic")
    counters = ("generator_steps",)

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        loss: GanLoss = "lsgan",
        nce_weight: float = 1.0,
        nce_identity: bool = True,
        nce_layers: tuple[int, ...] = (0, 4, 7, 10, 14),
        num_patches: int = 256,
        nce_temperature: float = 0.07,
        head_features: int = 256,
        optimizer: OptimizerCallable | None = None,
        critic_optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        diffaugment: str | None = None,
        ema: EMA | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        check_range("nce_weight", nce_weight, 0)
        check_range("num_patches", num_patches, 1)
        check_range("head_features", head_features, 1)
        if not nce_temperature > 0:
            raise ConfigError(
                f"model.init_args.nce_temperature={nce_temperature} must be above 0 (the "
                "paper's 0.07); fix it in the YAML."
            )
        layers = getattr(generator, "net", None)
        if not isinstance(layers, nn.Sequential):
            raise ConfigError(
                f"CUT reads the encoder of generator.net, an nn.Sequential; "
                f"{type(generator).__name__} has none: use monet.nets.ResnetGenerator."
            )
        if not nce_layers or min(nce_layers) < 0 or max(nce_layers) >= len(layers):
            raise ConfigError(
                f"model.init_args.nce_layers={list(nce_layers)}: give indices of generator.net "
                f"between 0 and {len(layers) - 1} (ResnetGenerator: 0, 4, 7, 10, 14)."
            )
        super().__init__(
            generator,
            optimizer,
            critic_optimizer,
            lr_scheduler,
            diffaugment,
            ema,
            channels_last=channels_last,
            compile=compile,
        )
        self.critic = critic
        self.loss, self.nce_weight, self.nce_identity = loss, nce_weight, nce_identity
        self.nce_layers = tuple(sorted(set(nce_layers)))
        self.num_patches, self.nce_temperature = num_patches, nce_temperature
        self.head = PatchHead(self.layer_channels(), head_features)

    def layer_channels(self) -> list[int]:
        """The channels of each NCE layer, from one pass of a small blank image (eager: the
        head's weights exist before the optimizers, checkpoints and DDP see the module)."""
        first = next(m for m in self.generator.net.modules() if isinstance(m, nn.Conv2d))
        blank = torch.zeros(1, first.in_channels, 32, 32)
        with torch.no_grad(), eval_mode(self.generator):
            features, _ = layer_features(self.generator.net, blank, self.nce_layers, full=False)
        return [f.shape[1] for f in features]

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        paper = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), fused=True)
        generators = [*self.generator.parameters(), *self.head.parameters()]
        return self.two_optimizers(paper, generators, self.critic.parameters())

    def patch_nce(
        self, sources: list[torch.Tensor], outputs: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """PatchNCE between the encoder features of the inputs (`sources`) and of their
        translations `outputs`, averaged over the layers (the same locations in both)."""
        targets, _ = layer_features(self.generator.net, outputs, self.nce_layers, full=False)
        total = outputs.new_zeros((), dtype=torch.float32)
        for i, (source, target) in enumerate(zip(sources, targets)):
            locations = source.shape[-2] * source.shape[-1]
            ids = torch.randperm(locations, generator=gen)[: self.num_patches].to(source.device)
            k = self.head(i, source, ids)  # the input's patches: not differentiated
            q = self.head(i, target, ids)
            total = total + patch_nce_loss(q, k, self.nce_temperature)
        return total / len(sources)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        monet, photo = self.pairs(batch)
        opt_g, opt_c = self.optimizers()
        gen = seeding.generator(self.global_step, self.global_rank, NCE_STREAM)
        inputs = torch.cat([photo, monet]) if self.nce_identity else photo
        sources, outputs = layer_features(self.generator.net, inputs, self.nce_layers)
        fake = outputs[: len(photo)]

        self.toggle_optimizer(opt_c)  # the paper's order: D on the fresh fakes, then G
        D = self.critic
        loss_c = critic_loss(self.loss, D(self.augment(monet)), D(self.augment(fake.detach())))
        opt_c.zero_grad(set_to_none=True)
        self.backward_outside_autocast(loss_c)
        opt_c.step()
        self.untoggle_optimizer(opt_c)

        self.toggle_optimizer(opt_g)
        adversarial = generator_loss(self.loss, D(self.augment(fake)))
        nce = self.patch_nce(sources, outputs, gen)  # with paintings: (NCE_X + NCE_Y) / 2
        loss_g = adversarial + self.nce_weight * nce
        opt_g.zero_grad(set_to_none=True)
        self.backward_outside_autocast(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.generator_stepped(len(photo))
        logs = {"gen_loss": adversarial, "nce": nce, "critic_loss": loss_c}
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()})

    def validation_step(self, photos: torch.Tensor, batch_idx: int) -> None:
        """PatchNCE of the training generator between photos and their paintings (fixed
        locations): how much of each photo's structure its painting keeps."""
        gen = seeding.generator(batch_idx, NCE_STREAM)
        with eval_mode(self.generator):
            sources, outputs = layer_features(self.generator.net, photos, self.nce_layers)
            nce = self.patch_nce(sources, outputs, gen)
        self.log("val/nce", nce, prog_bar=True, sync_dist=True)
