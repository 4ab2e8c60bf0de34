"""The GAN family: one LightningModule for every generator/critic pair, manual optimization."""

from __future__ import annotations

import functools
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from monet.errors import ConfigError
from monet.metrics import diversity
from monet.models.adversarial import Adversarial
from monet.models.common import check_range
from monet.models.ema import EMA
from monet.models.losses import GanLoss, critic_loss, generator_loss, gradient_penalty, r1_penalty
from monet.nets.common import spectral_norm_all
from monet.runtime import seeding


class GAN(Adversarial):
    """Adversarial training with `n_critic` critic steps per generator step.

    Each training batch is one critic step (a fresh real batch each time, as in Gulrajani et al.
    2017, Algorithm 1); after every `n_critic`-th critic step the generator takes one step.
    The data-efficient options (DiffAugment, R1, spectral norm, TTUR, generator EMA) are off
    by default and each is one key in the YAML.

    Args:
        generator: maps noise (B, latent_dim) to images in [-1, 1]; must have `latent_dim`.
        critic: maps images to one raw score per image (no sigmoid).
        loss: ``wgan_gp`` (Wasserstein), ``bce`` (non-saturating) or ``hinge``.
        n_critic: critic steps per generator step.
        gp_weight: weight of the gradient penalty (0 turns it off).
        r1_gamma: R1 penalty weight on real images (Mescheder et al. 2018); 0 turns it off.
        optimizer: the generator's optimizer, from the YAML (class_path + init_args); by
            default Adam(lr 1e-4, betas (0, 0.9)), the report's WGAN-GP.
        critic_optimizer: the critic's optimizer; by default the generator's (a higher lr here
            is the two time-scale update rule, Heusel et al. 2017).
        lr_scheduler: an optional LR schedule, one per optimizer, stepped at every generator
            step (so both follow the same clock whatever `n_critic`).
        diffaugment: DiffAugment policy, e.g. ``color,translation,cutout``; null is off.
        spectral_norm: spectral normalisation on every critic layer (Miyato et al. 2018).
        ema: an EMA copy of the generator that samples (half-life in images, BatchNorm
            statistics of its own); null is off.
        diversity_samples: images in the per-epoch collapse signal (0 turns it off).
        channels_last: NHWC memory format for the networks and batches.
        compile: `torch.compile` the networks (in place; checkpoints keep their keys).
    """

    networks = ("generator", "critic")
    counters = ("critic_steps", "generator_steps")

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        loss: GanLoss = "wgan_gp",
        n_critic: int = 5,
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        critic_optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        diffaugment: str | None = None,
        spectral_norm: bool = False,
        ema: EMA | None = None,
        diversity_samples: int = 64,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if not hasattr(generator, "latent_dim"):
            raise ConfigError(
                f"{type(generator).__name__} has no `latent_dim`: a GAN generator "
                "must say how long its noise vector is."
            )
        for key, value, low in (
            ("n_critic", n_critic, 1),
            ("gp_weight", gp_weight, 0),
            ("r1_gamma", r1_gamma, 0),
            ("diversity_samples", diversity_samples, 0),
        ):
            check_range(key, value, low)
        super().__init__(
            generator,
            optimizer,
            critic_optimizer,
            lr_scheduler,
            diffaugment,
            ema,
            standing=True,
            channels_last=channels_last,
            compile=compile,
        )
        self.critic = spectral_norm_all(critic) if spectral_norm else critic
        self.loss, self.n_critic = loss, n_critic
        self.gp_weight, self.r1_gamma = gp_weight, r1_gamma
        self.diversity_samples = diversity_samples
        self.critic_steps = 0  # saved in checkpoints: the n_critic cycle survives a resume
        self._real_sample: torch.Tensor | None = None

    def compilable(self) -> tuple[str, ...]:
        # the gradient penalty and R1 differentiate the critic twice, which compiled graphs
        # (aot_autograd) cannot do: the critic then runs eagerly
        return ("generator",) if self.gp_weight > 0 or self.r1_gamma > 0 else self.networks

    # -- sampling interface used by callbacks ---------------------------------------------------
    @torch.no_grad()
    def generate(self, noise: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Images in [-1, 1] from `noise`: the EMA copy gets standing BatchNorm statistics for
        its current weights first when `ema.buffers` is ``standing``."""
        if self.ema is not None:
            self.ema.refresh(self.standing_noise)
        return super().generate(noise, steps)

    def standing_noise(self, generator: torch.Generator) -> torch.Tensor:
        return self.sample_noise(64, generator=generator).to(self.device)

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, generator=generator)

    # -- training ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        report = functools.partial(torch.optim.Adam, lr=1e-4, betas=(0.0, 0.9), fused=True)
        return self.two_optimizers(report, self.generator.parameters(), self.critic.parameters())

    def training_step(self, real: torch.Tensor, batch_idx: int) -> None:
        opt_g, opt_c = self.optimizers()
        noise = torch.randn(len(real), self.generator.latent_dim, device=self.device)
        fake = self.generator(noise)  # noise drawn on the device: no host-to-device copy

        self.toggle_optimizer(opt_c)
        real_aug, fake_aug = self.augment(real), self.augment(fake.detach())
        real_score, fake_score = self.critic(real_aug), self.critic(fake_aug)
        loss_c = critic_loss(self.loss, real_score, fake_score)
        logs = {
            "critic_loss": loss_c.detach(),
            "wasserstein": (real_score.mean() - fake_score.mean()).detach(),
        }
        if self.gp_weight > 0:
            penalty = gradient_penalty(self.critic, real_aug, fake_aug)
            loss_c = loss_c + self.gp_weight * penalty
            logs["gradient_penalty"] = penalty.detach()
        if self.r1_gamma > 0:
            r1 = r1_penalty(self.critic, real_aug)
            loss_c = loss_c + 0.5 * self.r1_gamma * r1
            logs["r1_penalty"] = r1.detach()
        opt_c.zero_grad(set_to_none=True)
        self.backward_outside_autocast(loss_c)
        opt_c.step()
        self.untoggle_optimizer(opt_c)
        self.critic_steps += 1
        self.log_dict({f"train/{k}": v for k, v in logs.items()})

        if self.critic_steps % self.n_critic == 0:
            self.toggle_optimizer(opt_g)
            loss_g = generator_loss(self.loss, self.critic(self.augment(fake)))
            opt_g.zero_grad(set_to_none=True)
            self.backward_outside_autocast(loss_g)
            opt_g.step()  # a NaN or inf step leaves the weights as they were (NonFiniteGuard)
            self.generator_stepped(len(real))
            for scheduler in self.lr_schedulers() or []:
                scheduler.step()
            self.log("train/gen_loss", loss_g.detach())
            self.untoggle_optimizer(opt_g)

    def validation_step(self, real: torch.Tensor, batch_idx: int) -> None:
        gen = seeding.generator(batch_idx)  # the training RNG stream stays untouched
        fake = self.generate(self.sample_noise(len(real), generator=gen))
        gap = self.critic(real).mean() - self.critic(fake).mean()
        self.log("val/wasserstein", gap, prog_bar=True, sync_dist=True)
        if batch_idx == 0:
            self._real_sample = real[: self.diversity_samples]

    def on_validation_epoch_end(self) -> None:
        """The collapse signal: diversity of fixed-noise samples against that of real images."""
        real, self._real_sample = self._real_sample, None
        if self.diversity_samples < 2 or real is None or len(real) < 2:
            return
        gen = seeding.generator(0)
        fake = self.generate(self.sample_noise(self.diversity_samples, generator=gen))
        d_fake, d_real = diversity(fake), diversity(real)
        self.log_dict(
            {
                "diversity/fake": d_fake,
                "diversity/real": d_real,
                "diversity/ratio": d_fake / d_real.clamp(min=1e-8),
            },
            sync_dist=True,
        )
