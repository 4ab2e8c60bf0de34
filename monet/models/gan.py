"""The GAN family: one LightningModule for every generator/critic pair, manual optimization."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from monet.errors import ConfigError
from monet.losses import GanLoss, critic_loss, generator_loss, gradient_penalty
from monet.models.common import check_sizes


class GAN(L.LightningModule):
    """Adversarial training with `n_critic` critic steps per generator step.

    Each training batch is one critic step (a fresh real batch each time, as in Gulrajani et al.
    2017, Algorithm 1); after every `n_critic`-th critic step the generator takes one step.

    Args:
        generator: maps noise (B, latent_dim) to images in [-1, 1]; must have `latent_dim`.
        critic: maps images to one raw score per image (no sigmoid).
        loss: ``wgan_gp`` (Wasserstein), ``bce`` (non-saturating) or ``hinge``.
        n_critic: critic steps per generator step.
        gp_weight: weight of the gradient penalty (0 turns it off).
        lr: Adam learning rate of both networks.
        betas: Adam betas.
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        loss: GanLoss = "wgan_gp",
        n_critic: int = 5,
        gp_weight: float = 10.0,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
    ) -> None:
        super().__init__()
        if not hasattr(generator, "latent_dim"):
            raise ConfigError(
                f"{type(generator).__name__} has no `latent_dim`: a GAN generator "
                "must say how long its noise vector is."
            )
        if n_critic < 1:
            raise ConfigError(f"model n_critic={n_critic} must be at least 1.")
        self.save_hyperparameters(ignore=["generator", "critic"])
        self.generator, self.critic = generator, critic
        self.loss, self.n_critic, self.gp_weight = loss, n_critic, gp_weight
        self.lr, self.betas = lr, tuple(betas)
        self.automatic_optimization = False
        self.critic_steps = 0  # saved in checkpoints: the n_critic cycle survives a resume

    # -- sampling interface used by callbacks ---------------------------------------------------
    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, generator=generator)

    @torch.no_grad()
    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from `noise`, with the generator in eval mode."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            return self.generator(noise.to(self.device)).float()
        finally:
            self.generator.train(was_training)

    # -- training ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        check_sizes(self, "generator", "critic")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        opt_c = torch.optim.Adam(self.critic.parameters(), lr=self.lr, betas=self.betas)
        return [opt_g, opt_c]

    def training_step(self, real: torch.Tensor, batch_idx: int) -> None:
        opt_g, opt_c = self.optimizers()
        fake = self.generator(self.sample_noise(len(real)).to(self.device))

        self.toggle_optimizer(opt_c)
        real_score, fake_score = self.critic(real), self.critic(fake.detach())
        loss_c = critic_loss(self.loss, real_score, fake_score)
        logs = {
            "critic_loss": loss_c.detach(),
            "wasserstein": (real_score.mean() - fake_score.mean()).detach(),
        }
        if self.gp_weight > 0:
            penalty = gradient_penalty(self.critic, real, fake.detach())
            loss_c = loss_c + self.gp_weight * penalty
            logs["gradient_penalty"] = penalty.detach()
        opt_c.zero_grad(set_to_none=True)
        self.manual_backward(loss_c)
        opt_c.step()
        self.untoggle_optimizer(opt_c)
        self.critic_steps += 1

        if self.critic_steps % self.n_critic == 0:
            self.toggle_optimizer(opt_g)
            loss_g = generator_loss(self.loss, self.critic(fake))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            self.log("train/gen_loss", loss_g.detach(), prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False)

    def validation_step(self, real: torch.Tensor, batch_idx: int) -> None:
        fake = self.generate(self.sample_noise(len(real)))
        gap = self.critic(real).mean() - self.critic(fake).mean()
        self.log("val/wasserstein", gap, prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["critic_steps"] = self.critic_steps

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.critic_steps = checkpoint.get("critic_steps", 0)
