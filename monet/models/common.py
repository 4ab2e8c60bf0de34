"""What every generative LightningModule shares: size checks and seeded generation."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from monet.errors import ConfigError
from monet.models.ema import AveragedNetwork, upgrade_checkpoint
from monet.nets.common import cpu_has_bf16


class GenerativeModule(L.LightningModule):
    """A family's base, and the contract that callbacks, `predict` and the benchmarks use.

    Subclasses provide ``sample_noise`` (the inputs of a grid, of metrics and of `predict`) and
    ``generate`` (those inputs to images in [-1, 1]); they say whether they translate (their
    inputs are images, which metrics then score too) and whether sampling is iterative (then
    ``generate(inputs, steps=N)`` samples in N network evaluations; a one-pass family ignores
    `steps`). ``predict`` turns batches of per-image seeds (from the DataModule) into images,
    so image i is the same whatever the batch size or the number of devices.
    """

    networks: tuple[str, ...] = ()  # attributes built for one image size
    averaged = ""  # the network that samples: `ema` averages it when the YAML has an EMA
    ema: AveragedNetwork | None  # set by every family (a class default would hide the module)
    counters: tuple[str, ...] = ()  # int attributes saved in checkpoints for an exact resume
    channels_last = False  # NHWC activations: faster convolutions on GPUs and most CPUs
    compile = False  # torch.compile every network
    translates = False  # inputs are images to translate, not noise
    iterative = False  # sampling takes many network evaluations, set by `steps`

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, inputs: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def grid_images(self, inputs: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """What a sample grid shows of `inputs`: the generated images."""
        return self.generate(inputs, steps)

    @property
    def sampling_net(self) -> nn.Module:
        """The network that samples: the EMA copy when there is one, else the live one."""
        return self.ema.net if self.ema is not None else getattr(self, self.averaged)

    def images_per_step(self, batch_size: int) -> int:
        """The images one optimizer step sees: `batch_size` per device and batch, summed over
        devices and (automatic optimization) accumulated batches."""
        trainer = self._trainer
        if trainer is None:
            return batch_size
        accumulate = trainer.accumulate_grad_batches if self.automatic_optimization else 1
        return batch_size * trainer.world_size * accumulate

    def update_ema(self, batch_size: int) -> None:
        """One optimizer step of the EMA (when there is one); `batch_size` images per device."""
        if self.ema is not None:
            self.ema.update(getattr(self, self.averaged), self.images_per_step(batch_size))

    def setup(self, stage: str) -> None:
        check_sizes(self, *self.networks)
        if isinstance(self.trainer.strategy, FSDPStrategy | DeepSpeedStrategy):
            raise ConfigError(
                f"--trainer.strategy {type(self.trainer.strategy).__name__} is not supported: "
                "sharding would split the EMA copies from the weights they average. The "
                "largest network here (AttnUnet, 73M parameters) fits one GPU with its "
                "gradients, Adam state and EMA (about 1.5 GB); use --trainer.strategy ddp."
            )
        if stage == "fit" and self.trainer.world_size > 1:
            # seed_everything gives every rank the same seed, so every rank would draw the same
            # noise; offset the streams by rank (a resumed run then restores each rank's own).
            seed = torch.initial_seed() + self.trainer.global_rank
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)

    def on_fit_start(self) -> None:
        """Say what the optimizer really sees: the batch summed over devices and accumulation;
        warn when bf16-mixed would be emulated."""
        trainer, datamodule = self.trainer, self.trainer.datamodule
        if trainer.precision == "bf16-mixed" and self.device.type == "cpu" and not cpu_has_bf16():
            rank_zero_warn(
                "precision bf16-mixed on a CPU without bfloat16 units (AVX512-BF16 or AMX): "
                "bfloat16 is emulated there, and its matmuls and convolutions run about 5x "
                "slower than float32 (LibUnet computes in float32 by itself). On this machine "
                "--trainer.precision 32-true is faster."
            )
        per_device = getattr(datamodule, "batch_size", None)
        if per_device is None:
            return
        accumulate = trainer.accumulate_grad_batches
        effective = per_device * trainer.world_size * accumulate
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        rank_zero_info(
            f"effective batch size {effective} = {per_device} per device x {trainer.world_size} "
            f"devices x {accumulate} accumulated; learning rates {lrs} (not rescaled)"
        )
        for logger in trainer.loggers:
            logger.log_hyperparams(
                {"effective_batch_size": effective, "world_size": trainer.world_size}
            )

    def compilable(self) -> tuple[str, ...]:
        """The networks `compile` may compile (a family may need to leave one out)."""
        return self.networks

    def configure_model(self) -> None:
        """`channels_last` and `compile` from the YAML, on every network the family trains and
        on the EMA copy as on the network it averages."""
        nets = [(name, getattr(self, name)) for name in self.networks]
        if self.ema is not None:
            nets.append((self.averaged, self.ema.net))
        for name, net in nets:
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            if self.compile and name in self.compilable() and not hasattr(net, "_monet_compiled"):
                net.compile()  # in place: state_dict keys (and checkpoints) stay the same
                net._monet_compiled = True

    def noise_from_seeds(self, seeds: torch.Tensor) -> torch.Tensor:
        gens = (torch.Generator().manual_seed(int(s)) for s in seeds.tolist())
        return torch.cat([self.sample_noise(1, generator=g) for g in gens])

    def predict_step(self, seeds: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.generate(self.noise_from_seeds(seeds))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["counters"] = {name: getattr(self, name) for name in self.counters}
        checkpoint["rng_states"] = gather_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        upgrade_checkpoint(checkpoint, self.averaged)  # the EMA's keys before AveragedNetwork
        for name, value in checkpoint.get("counters", {}).items():
            setattr(self, name, value)
        states = checkpoint.get("rng_states")
        if states:  # this rank's stream, or rank 0's when the run had fewer ranks
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            set_rng_state(states[rank if rank < len(states) else 0])


def check_range(key: str, value: float | None, low: float, high: float | None = None) -> None:
    """A one-line error at construction for a hyperparameter outside [low, high]."""
    if value is not None and (value < low or (high is not None and value > high)):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"model.init_args.{key}={value} must be {bounds}; fix it in the YAML.")


def build_optimizer(make: Any, params: Any, key: str) -> torch.optim.Optimizer:
    """`make(params)`, with an optimizer's own check of its values (a negative lr, betas out of
    [0, 1)) turned into a one-line error that names the YAML key."""
    try:
        return make(params)
    except ValueError as err:
        raise ConfigError(f"model.init_args.{key}: {err}; fix the value in the YAML.") from None


def check_sizes(module: L.LightningModule, *names: str) -> None:
    """Fail before training when a network was built for another size than the data's."""
    size = getattr(getattr(module.trainer, "datamodule", None), "image_size", None)
    for name in names:
        own = getattr(getattr(module, name), "image_size", None)
        if size is not None and own is not None and own != size:
            raise ConfigError(
                f"model.{name} is built for {own} px but data.image_size={size}: set "
                f"model.init_args.{name}.init_args.image_size={size}, or data.image_size={own}."
            )


def rng_state() -> dict[str, Any]:
    """Every random stream training draws from: noise, timesteps, dropout, DiffAugment."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain types and tensors only: Lightning loads checkpoints with weights_only=True
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """One state per rank (each rank draws its own noise), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return [rng_state()]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, rng_state())
    return states
