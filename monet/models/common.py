"""What every generative LightningModule shares: size checks and seeded generation."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from monet.errors import ConfigError
from monet.models.ema import AveragedNetwork, upgrade_checkpoint
from monet.nets.common import cpu_has_bf16
from monet.runtime.seeding import gather_rng_states, offset_by_rank, restore_rank_state


class GenerativeModule(L.LightningModule):
    """A family's base, and the contract that callbacks, `predict` and the benchmarks use.

    Subclasses provide ``sample_noise`` (a noise family's inputs) and ``generate`` (inputs to
    images in [-1, 1]); they say whether they translate (their inputs are images, which metrics
    then score too) and whether sampling is iterative (then ``generate(inputs, steps=N)``
    samples in N network evaluations; a one-pass family ignores `steps`).
    ``sample_inputs(n, generator, datamodule)`` draws the inputs of a grid or of metrics: noise,
    or, for a translating family, images of the DataModule the caller passes in (the model
    never looks the DataModule up). ``predict`` turns batches of per-image seeds (from the
    DataModule) into images, so image i is the same whatever the batch size or the number of
    devices. Batches reach the steps in the model's memory format (`channels_last`).
    """

    networks: tuple[str, ...] = ()  # attributes built for one image size
    averaged = ""  # the network that samples: `ema` averages it when the YAML has an EMA
    ema: AveragedNetwork | None  # None unless a family builds one
    counters: tuple[str, ...] = ()  # int attributes saved in checkpoints for an exact resume
    channels_last = False  # NHWC activations: faster convolutions on GPUs and most CPUs
    compile = False  # torch.compile every network
    translates = False  # inputs are images to translate, not noise
    iterative = False  # sampling takes many network evaluations, set by `steps`
    ddp_unused_parameters = False  # some steps leave a network without gradients (DDP must know)

    def __init__(self) -> None:
        super().__init__()
        self.ema = None  # an instance attribute: a class default would hide the module

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def sample_inputs(
        self, n: int, generator: torch.Generator | None = None, datamodule: Any = None
    ) -> torch.Tensor:
        """The inputs of `n` images of a grid or of metrics (CPU tensors): noise by default;
        a translating family takes them from `datamodule` (the caller's)."""
        return self.sample_noise(n, generator=generator)

    def generate(self, inputs: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def grid_images(self, inputs: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """What a sample grid shows of `inputs`: the generated images."""
        return self.generate(inputs, steps)

    @property
    def sampling_net(self) -> nn.Module:
        """The network that samples: the EMA copy when there is one, else the live one."""
        return self.ema.selected if self.ema is not None else getattr(self, self.averaged)

    def images_per_step(self, batch_size: int) -> int:
        """The images one optimizer step sees: `batch_size` per device and batch, summed over
        devices and (automatic optimization) accumulated batches."""
        trainer = attached_trainer(self)
        if trainer is None:
            return batch_size
        accumulate = trainer.accumulate_grad_batches if self.automatic_optimization else 1
        return batch_size * trainer.world_size * accumulate

    def update_ema(self, batch_size: int) -> None:
        """One optimizer step of the EMA (when there is one); `batch_size` images per device."""
        if self.ema is not None:
            self.ema.update(getattr(self, self.averaged), self.images_per_step(batch_size))

    def setup(self, stage: str) -> None:
        # The DataModule moves, decodes and augments batches (`transfer_batch_to_device`); the
        # model lays them out in its memory format (`on_after_batch_transfer`). Lightning calls
        # each side's hook and warns that a model's batch hook beside a DataModule is unusual:
        # here it is the design.
        warnings.filterwarnings("ignore", "You have overridden `on_after_batch_transfer` in `L")
        check_data(self.trainer.datamodule, self)
        check_sizes(self, *self.networks)
        if isinstance(self.trainer.strategy, FSDPStrategy | DeepSpeedStrategy):
            raise ConfigError(
                f"--trainer.strategy {type(self.trainer.strategy).__name__} is not supported: "
                "sharding would split the EMA copies from the weights they average. The "
                "largest network here (AttnUnet, 73M parameters) fits one GPU with its "
                "gradients, Adam state and EMA (about 1.5 GB); use --trainer.strategy ddp."
            )
        if stage == "fit" and self.trainer.world_size > 1:
            offset_by_rank(self.trainer.global_rank)  # a resumed run restores each rank's own

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
        if datamodule is None:
            return
        per_device = datamodule.batch_size
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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images (4-D tensors, alone or as a dict's values) in NHWC with `channels_last`;
        anything else (`predict`'s seeds) as it is."""
        if not self.channels_last:
            return batch
        if isinstance(batch, dict):
            return {k: self.on_after_batch_transfer(v, dataloader_idx) for k, v in batch.items()}
        if isinstance(batch, torch.Tensor) and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def compilable(self) -> tuple[str, ...]:
        """The networks `compile` may compile (a family may need to leave one out)."""
        return self.networks

    def configure_model(self) -> None:
        """`channels_last` and `compile` from the YAML, on every network the family trains and
        on the EMA copy as on the network it averages."""
        nets = [(name, getattr(self, name)) for name in self.networks]
        if self.ema is not None:
            nets += [(self.averaged, net) for _, net in self.ema.copies()]
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
        if self.ema is not None and "state_dict" in checkpoint:
            self.ema.fill_kept(checkpoint["state_dict"])
        for name, value in checkpoint.get("counters", {}).items():
            setattr(self, name, value)
        restore_rank_state(checkpoint.get("rng_states"))


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer `module` is attached to, or None (where Lightning's `module.trainer` raises)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


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


class GenerativeData(Protocol):
    """The DataModule contract: every member that models, callbacks, `predict` and the CLI use
    of `trainer.datamodule`, beside Lightning's own hooks (`setup`, the loaders, the batch
    transfer). `check_data` holds a DataModule to it when the Trainer starts (and the CLI
    before anything is built); MonetDataModule implements it, UnpairedDataModule too, with
    the photos of `TranslationData` for the families that translate.
    """

    image_size: int  # the side the networks are built for (`check_sizes`)
    batch_size: int  # per device and batch: the effective batch is logged from it
    exclude: tuple[Path, ...]  # files `predict` never reads (the export's own output: the CLI)

    def train_dataloader(self) -> Any:
        """Lightning's loader: EvalMetrics counts its batches to know whether a run reaches
        a metric epoch."""

    def reference_images(self) -> torch.Tensor:
        """The real images (uint8, (N, 3, S, S)) that metrics and the memorization report
        compare with, read if they were not."""

    @property
    def predict_names(self) -> list[str]:
        """A name for each image `predict` makes, in batch order (after `setup("predict")`):
        the export names its files after them and counts a Kaggle zip's images."""


class TranslationData(GenerativeData, Protocol):
    """What a translating family (`GenerativeModule.translates`) needs beside: photos."""

    def sample_photos(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` photos in [-1, 1] (different ones for different generators): the inputs of a
        translating model's grids and metrics."""


def members(contract: type) -> list[str]:
    """The members a Protocol declares (attributes, then methods), its bases' first."""
    own = [c for c in reversed(contract.__mro__) if Protocol in c.__bases__]
    names = [n for c in own for n in [*inspect.get_annotations(c), *vars(c)]]
    return list(dict.fromkeys(n for n in names if not n.startswith("_")))


def lacks(datamodule: Any, contract: type) -> list[str]:
    """The members of `contract` that `datamodule` lacks (looked up without running a property,
    which may need `setup` first)."""
    absent = object()
    return [m for m in members(contract) if inspect.getattr_static(datamodule, m, absent) is absent]


def no_photos(model: Any, datamodule: Any) -> ConfigError:
    """The one error for a translating family without photos to translate."""
    has = (
        "no DataModule gave them"
        if datamodule is None
        else f"{type(datamodule).__name__} holds none"
    )
    return ConfigError(
        f"{type(model).__name__} translates photos and trains on painting/photo pairs, and "
        f"{has}: use data.class_path monet.data.UnpairedDataModule."
    )


def check_data(datamodule: Any, model: Any = None) -> None:
    """Refuse, in one line that names what is missing, a DataModule that lacks a member of
    `GenerativeData` (or, for a `model` that translates, photos). None (dataloaders passed to
    the Trainer directly) passes: there is nothing to hold to the contract."""
    if datamodule is None:
        return
    missing = lacks(datamodule, GenerativeData)
    if missing:
        raise ConfigError(
            f"data: {type(datamodule).__name__} has no {', '.join(missing)}, which the models "
            "and callbacks use: a DataModule provides every member of "
            "monet.models.common.GenerativeData (MonetDataModule does; subclass it)."
        )
    if getattr(model, "translates", False) and lacks(datamodule, TranslationData):
        raise no_photos(model, datamodule)


def datamodule_of(trainer: L.Trainer) -> GenerativeData | None:
    """`trainer.datamodule`, held to the contract (None: loaders given to the Trainer)."""
    datamodule = trainer.datamodule
    check_data(datamodule, trainer.lightning_module)
    return datamodule


def check_sizes(module: L.LightningModule, *names: str) -> None:
    """Fail before training when a network was built for another size than the data's."""
    datamodule = module.trainer.datamodule
    if datamodule is None:
        return
    size = datamodule.image_size
    for name in names:
        own = getattr(getattr(module, name), "image_size", None)  # a net may work at any size
        if own is not None and own != size:
            raise ConfigError(
                f"model.{name} is built for {own} px but data.image_size={size}: set "
                f"model.init_args.{name}.init_args.image_size={size}, or data.image_size={own}."
            )
