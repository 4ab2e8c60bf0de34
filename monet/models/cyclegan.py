"""Photo -> Monet translation: CycleGAN (Zhu et al. 2017), manual optimization."""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from monet.errors import ConfigError
from monet.models.adversarial import Translator
from monet.models.common import check_range
from monet.models.ema import EMA
from monet.models.losses import GanLoss, critic_loss, cycle_loss, generator_loss, identity_loss
from monet.models.pool import ImagePool
from monet.nets.common import dcgan_init, eval_mode
from monet.runtime import seeding


class LinearDecay(LambdaLR):
    """The paper's schedule: the initial rate for `constant` epochs, then linearly to zero over
    `decay` epochs (the rate of epoch e is lr * (1 - max(0, e - constant) / (decay + 1)))."""

    def __init__(self, optimizer: torch.optim.Optimizer, constant: int = 100, decay: int = 100):
        if constant < 0 or decay < 0:
            raise ConfigError(f"LinearDecay constant={constant}, decay={decay} must be >= 0.")
        super().__init__(optimizer, lambda e: max(0.0, 1.0 - max(0, e - constant) / (decay + 1)))


class CycleGAN(Translator):
    """Two generators, photo -> Monet (`generator`, the one that paints) and Monet -> photo
    (`inverse`), each with a discriminator (`critic` on paintings, `photo_critic` on photos).

    Each training batch ``{"monet": x, "photo": y}`` takes one generator step (both
    generators: adversarial + `cycle_weight` x cycle + `identity_weight` x `cycle_weight` x
    identity) and one discriminator step (both critics, on fakes from a history pool of
    `pool_size` images). The inverse generator and the photo critic are copies of the injected
    networks with fresh weights. `sample_inputs` draws photos (from the DataModule the caller
    passes) and `generate` translates them, so grids, metrics and ``predict`` work as for the
    other families.

    Args:
        generator: photo -> Monet network, images in [-1, 1] to images in [-1, 1].
        critic: the Monet discriminator (raw patch scores).
        loss: the adversarial loss; ``lsgan`` as in the paper.
        cycle_weight: lambda of the cycle loss (10).
        identity_weight: the identity loss's weight as a share of lambda (0.5; 0 is off).
        pool_size: generated images each critic also sees from the past (50; 0 is off).
        optimizer: both generators' optimizer (default Adam 2e-4, betas (0.5, 0.999)).
        critic_optimizer: both critics' optimizer (default: the generators').
        lr_scheduler: e.g. ``monet.models.LinearDecay``, stepped once an epoch.
        diffaugment: DiffAugment policy on the Monet critic's inputs (real and fake alike).
        ema: an EMA copy of the photo -> Monet generator that translates (null is off).
        channels_last, compile: as for the other families.
    """

    networks = ("generator", "inverse", "critic", "photo_critic")
    counters = ("generator_steps",)

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        loss: GanLoss = "lsgan",
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        optimizer: OptimizerCallable | None = None,
        critic_optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        diffaugment: str | None = None,
        ema: EMA | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        for key, value in (
            ("cycle_weight", cycle_weight),
            ("identity_weight", identity_weight),
            ("pool_size", pool_size),
        ):
            check_range(key, value, 0)  # 0 turns it off
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
        self.inverse = fresh_copy(generator)
        self.photo_critic = fresh_copy(critic)
        self.loss, self.cycle_weight, self.identity_weight = loss, cycle_weight, identity_weight
        self.pools = {"monet": ImagePool(pool_size), "photo": ImagePool(pool_size)}

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        paper = functools.partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999), fused=True)
        generators = [*self.generator.parameters(), *self.inverse.parameters()]
        critics = [*self.critic.parameters(), *self.photo_critic.parameters()]
        return self.two_optimizers(paper, generators, critics)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        monet, photo = self.pairs(batch)
        opt_g, opt_c = self.optimizers()
        G, F = self.generator, self.inverse

        self.toggle_optimizer(opt_g)
        fake_monet, fake_photo = G(photo), F(monet)
        adversarial = generator_loss(self.loss, self.critic(self.augment(fake_monet)))
        adversarial = adversarial + generator_loss(self.loss, self.photo_critic(fake_photo))
        cycle = cycle_loss(photo, F(fake_monet)) + cycle_loss(monet, G(fake_photo))
        loss_g = adversarial + self.cycle_weight * cycle
        logs = {"gen_loss": adversarial.detach(), "cycle": cycle.detach()}
        if self.identity_weight > 0:
            identity = identity_loss(monet, G(monet)) + identity_loss(photo, F(photo))
            loss_g = loss_g + self.identity_weight * self.cycle_weight * identity
            logs["identity"] = identity.detach()
        opt_g.zero_grad(set_to_none=True)
        self.backward_outside_autocast(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        self.generator_stepped(len(photo))

        self.toggle_optimizer(opt_c)
        pool_gen = seeding.generator(self.global_step, self.global_rank)
        old_monet = self.pools["monet"].query(fake_monet.detach(), pool_gen)
        old_photo = self.pools["photo"].query(fake_photo.detach(), pool_gen)
        D, D_photo = self.critic, self.photo_critic
        loss_c = critic_loss(self.loss, D(self.augment(monet)), D(self.augment(old_monet)))
        loss_c = loss_c + critic_loss(self.loss, D_photo(photo), D_photo(old_photo))
        opt_c.zero_grad(set_to_none=True)
        self.backward_outside_autocast(loss_c)
        opt_c.step()
        self.untoggle_optimizer(opt_c)
        logs["critic_loss"] = loss_c.detach()
        self.log_dict({f"train/{k}": v for k, v in logs.items()})

    def validation_step(self, photos: torch.Tensor, batch_idx: int) -> None:
        """How well a painting made from a photo turns back into that photo."""
        with eval_mode(self.inverse) as inverse:
            back = inverse(self.generate(photos))
        self.log("val/cycle", cycle_loss(photos, back), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["image_pools"] = {k: pool.state_dict() for k, pool in self.pools.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for key, state in checkpoint.get("image_pools", {}).items():
            self.pools[key].load_state_dict(state)


def fresh_copy(net: nn.Module) -> nn.Module:
    """The same architecture with its own N(0, 0.02) weights (the paper's initialisation)."""
    twin = copy.deepcopy(net)
    dcgan_init(twin)
    return twin
