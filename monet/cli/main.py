"""The command line: `python -m monet fit --config configs/wgan_gp.yaml` (monet/__main__.py).

`MonetCLI` is Lightning's CLI with one-line errors (a config file, a key, a checkpoint of another
model: what is wrong and the fix, before anything is built), `data.image_size` linked into
every network, and the callbacks every run has declared once (`RUN_CALLBACKS`, each under its
own key: `--metrics.every_n_epochs`, `--samples.num_samples`, `--checkpoint.every_minutes`)
with the settings every config shares (`RUN_DEFAULTS`): a YAML holds what is particular to it.
`main` turns those errors into exit code 2 and SIGTERM into 143.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from monet.callbacks import (
    EvalMetrics,
    ImageExport,
    LastCheckpoint,
    LossCurves,
    NonFiniteGuard,
    SampleGrid,
)
from monet.callbacks.config import SaveConfig, model_info
from monet.cli.checks import check_config_file, config_paths, one_line
from monet.data import MonetDataModule
from monet.errors import ConfigError, Interrupted, MonetError
from monet.models.common import GenerativeModule, check_data
from monet.models.ema import upgrade_checkpoint
from monet.runtime.malloc import keep_freed_memory
from monet.runtime.rundir import run_dir

NAMED_CHECKPOINTS = ("last", "best")  # found in the experiment's folders (`resolve_checkpoint`)

# The callbacks every run has, each under its own key (`--metrics.every_n_epochs 5`), in the
# order they run; a config sets only what differs. `trainer.callbacks` takes any others.
RUN_CALLBACKS = {
    "guard": NonFiniteGuard,  # a NaN/inf step leaves the weights as they were
    "checkpoint": LastCheckpoint,  # last.ckpt: each epoch, every 10 minutes, on the way out
    "best": ModelCheckpoint,  # the best by metrics/selection, when the metrics run
    "metrics": EvalMetrics,  # FID, KID, MiFID, SWD, near-copies on generated images
    "samples": SampleGrid,  # grids from fixed noise, progress.gif
    "loss_curves": LossCurves,
    "lr_monitor": LearningRateMonitor,
}
# What every shipped config shares, beside the classes' own defaults: `--print_config` shows it
RUN_DEFAULTS = {
    "trainer.precision": "32-true",
    "trainer.log_every_n_steps": 10,
    "trainer.check_val_every_n_epoch": 10,  # validation: 64 paintings, a few steps' cost
    # W&B, offline by itself without an API key or network (then: wandb sync <dir>); for CSV:
    # --trainer.logger.class_path lightning.pytorch.loggers.CSVLogger
    "trainer.logger": {
        "class_path": "monet.runtime.loggers.WandbLogger",
        "init_args": {"project": "monet", "log_model": False},
    },
    "best.monitor": "metrics/selection",  # MiFID, or SWD x near-copies (EvalMetrics)
    "best.mode": "min",
    "best.filename": "best-{epoch}-{step}",
}


def refuse_listed_run_callbacks(callbacks: Any) -> None:
    """A config written before `RUN_CALLBACKS` lists monet's run callbacks under
    `trainer.callbacks`: they would run twice. One line says where their settings go now."""
    for spec in callbacks or []:
        path = str(spec.get("class_path", "")) if hasattr(spec, "get") else ""
        for key, callback in RUN_CALLBACKS.items():
            if callback.__module__.startswith("monet.") and path.endswith(callback.__name__):
                raise ConfigError(
                    f"trainer.callbacks lists {path}, which every run has now, under its own key "
                    f"`{key}`: move its init_args to a top-level `{key}:` in the YAML (or "
                    f"--{key}.<arg>) and drop it from trainer.callbacks."
                )


def describe(info: dict[str, Any]) -> str:
    """'a GAN (FastGANGenerator, 64 px)' from what `model_info` gives (parts may be missing)."""
    size = f"{info['image_size']} px" if info.get("image_size") else None
    details = ", ".join(str(d) for d in (info.get("network"), size) if d)
    return f"a {info.get('family')}" + (f" ({details})" if details else "")


def refuse_other_model(path: Path, held: dict[str, Any], asked: dict[str, Any], by: str) -> None:
    """One line when checkpoint `path` holds another family, network or size than `asked`."""
    if any(held.get(k) and asked.get(k) and held[k] != asked[k] for k in asked):
        raise ConfigError(
            f"{path} holds {describe(held)}; {by} builds {describe(asked)}. Use the config "
            "(and --data.image_size) it was trained with, or a checkpoint of this config."
        )


class MonetParser(LightningArgumentParser):
    """Parse errors as one `monet: error:` line naming the key and the fix, without usage."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse trying alternatives: it catches these
            super().error(message, ex)
        raise ConfigError(one_line(message))


class MonetCLI(LightningCLI):
    """LightningCLI whose networks take their image size from `data.image_size`."""

    NETWORK_KEYS = ("generator", "critic", "denoiser")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parser_class=MonetParser, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Config files first: a YAML error names the file, line and column. A checkpoint file
        given as --ckpt_path is checked here: readable, and of the family, network and size the
        config builds."""
        given = sys.argv[1:] if args is None else args
        if isinstance(given, list):
            for path in config_paths(given):
                check_config_file(path)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        refuse_listed_run_callbacks(config["trainer"].get("callbacks"))
        path = config.get("ckpt_path")
        if path not in (None, *NAMED_CHECKPOINTS):
            configs = [str(c) for c in config.get("config") or []]
            by = configs[-1] if configs else "this config"
            refuse_other_model(
                Path(path), checkpoint_info(read_checkpoint(Path(path))), self._asked(config), by
            )
        # What the user typed is what runs: Lightning would now apply a checkpoint file's
        # hyperparameters over these options (and only for a file, not `last`); they are put
        # back before anything is built (`before_instantiate_classes`). A checkpoint brings
        # weights and state.
        self._typed = self.config.clone()

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        seed = (self.config[subcommand] if subcommand else self.config).get("seed_everything")
        self.config = self._typed
        typed = self.config[subcommand] if subcommand else self.config
        typed["seed_everything"] = seed  # as Lightning drew it (`seed_everything: true`)
        model = import_class((typed.get("model") or {}).get("class_path"))
        if getattr(model, "ddp_unused_parameters", False):
            trainer = typed["trainer"]
            trainer["strategy"] = finding_unused_parameters(trainer["strategy"], trainer)

    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: a link for each network slot the families have; a slot the
        # chosen model lacks is skipped, so every family shares this CLI.
        for key in self.NETWORK_KEYS:
            parser.link_arguments(
                "data.init_args.image_size", f"model.init_args.{key}.init_args.image_size"
            )
        # `predict --export.output images.zip` (a Kaggle submission) or a folder of images
        parser.add_class_arguments(ImageExport, "export")
        for key, callback in RUN_CALLBACKS.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults(RUN_DEFAULTS)
        # Said once: the best checkpoint is judged when the metrics run, and training-time
        # samples (grids, metrics) take one number of steps, by default the model's.
        parser.link_arguments("metrics.every_n_epochs", "best.every_n_epochs")
        parser.link_arguments("samples.sampling_steps", "metrics.sampling_steps")

    def _asked(self, config: Any) -> dict[str, Any]:
        """The family, main network and image size a parsed (not built) config asks for."""
        model, data = config.get("model"), config.get("data")
        init = (model.get("init_args") if model is not None else None) or {}
        net = next((init.get(k) for k in ("generator", "denoiser") if init.get(k)), None)
        size = (data.get("init_args") or {}).get("image_size") if data is not None else None

        def name(spec: Any) -> str | None:
            path = spec.get("class_path") if hasattr(spec, "get") else None
            return str(path).rsplit(".", 1)[-1] if path else None

        return {"family": name(model), "network": name(net), "image_size": size}

    def resolve_checkpoint(self) -> None:
        """`--ckpt_path last`: the newest last.ckpt of this experiment, across its versions, or
        the newer hpc_ckpt_N.ckpt that Lightning wrote on SLURM's signal before a requeue.
        `--ckpt_path best`: the newest best checkpoint (`ModelCheckpoint`'s file) of the
        experiment. Either is checked against the model before the first step.

        Lightning looks only in the new run's own (empty) version folder; a resumed job wants
        the one its previous attempt left.
        """
        config = self.config_init[self.subcommand]
        asked = config.get("ckpt_path")
        if asked not in NAMED_CHECKPOINTS:
            if asked is not None:
                check_checkpoint(Path(asked), self.model)
            return
        root = run_dir(self.trainer).parent  # every version of this experiment
        if asked == "last":
            # and the checkpoint Lightning saves on SLURM's pre-emption signal before a requeue
            hpc = Path(self.trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
            found = [*root.glob("**/last.ckpt"), *hpc]
        else:
            best = self.trainer.checkpoint_callback
            prefix = (getattr(best, "filename", None) or "").split("{", 1)[0] or "epoch="
            found = [p for p in root.glob("**/*.ckpt") if p.name.startswith(prefix)]
        found.sort(key=lambda p: p.stat().st_mtime)
        if not found:
            what = "last.ckpt" if asked == "last" else "best checkpoint"
            verb = "resume" if self.subcommand == "fit" else "load"
            raise ConfigError(
                f"--ckpt_path {asked}: no {what} under {root}, so there is nothing to {verb}; "
                "drop --ckpt_path to start afresh, or give the checkpoint file itself."
            )
        check_checkpoint(found[-1], self.model)
        config["ckpt_path"] = str(found[-1])
        verb = "resuming from" if self.subcommand == "fit" else "loading"
        print(f"monet: {verb} {found[-1]}", file=sys.stderr)

    def before_run(self) -> None:
        """The DataModule held to the contract the models and callbacks use, then the
        checkpoint: each refused in one line before the Trainer starts."""
        check_data(self.datamodule, self.model)
        self.resolve_checkpoint()

    before_fit = before_validate = before_test = before_run

    def before_predict(self) -> None:
        """Everything checked before the first image: the output, the DataModule, the
        checkpoint, then the photos to translate (never the export's own output) and the plan
        of files."""
        export = self.config_init[self.subcommand]["export"]
        export.check_output()
        self.before_run()
        self.datamodule.exclude = export.writes
        self.datamodule.setup("predict")
        export.plan(self.datamodule)
        self.trainer.callbacks.append(export)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (TypeError, ValueError, MisconfigurationException) as err:  # Lightning's checks
            raise ConfigError(trainer_error(err, config["trainer"].as_dict())) from None
        return trainer

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:  # jsonargparse wraps errors raised in __init__: unwrap ours
            cause = err
            while cause is not None and not isinstance(cause, MonetError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None


def import_class(class_path: Any) -> type | None:
    """The class a config's `class_path` names (None when it names none)."""
    module, _, name = str(class_path or "").rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def finding_unused_parameters(strategy: Any, trainer: Any) -> Any:
    """`--trainer.strategy` as given, with DDP told to find unused parameters (a GAN's critic
    step leaves the generator without gradients), chosen before the Trainer is built: a name
    becomes its registered `_find_unused_parameters_true` twin (`auto`: when Lightning picks DDP
    for these devices), a DDPStrategy class gets `find_unused_parameters: true`. Any other
    strategy stays as it is."""
    if isinstance(strategy, str):
        name = strategy.removesuffix("_find_unused_parameters_false")
        if name == "auto" and picks_ddp(trainer):
            # the DDP Lightning picks for `auto`: fork in a notebook or an interactive session
            name = "ddp_fork" if hasattr(sys, "ps1") or sys.flags.interactive else "ddp"
        twin = f"{name}_find_unused_parameters_true"
        return twin if twin in StrategyRegistry else strategy
    cls = import_class(strategy.get("class_path") if hasattr(strategy, "get") else None)
    if cls is not None and issubclass(cls, DDPStrategy):
        strategy["init_args"]["find_unused_parameters"] = True
    return strategy


def picks_ddp(trainer: Any) -> bool:
    """Whether Lightning's `auto` strategy is DDP for these devices (several, or several nodes):
    what a Trainer built with them has, quietly. A device error is left to the real Trainer."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = rank_zero.level
    rank_zero.setLevel(logging.WARNING)  # no second "GPU available: ..." report
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = Trainer(
                accelerator=trainer.get("accelerator", "auto"),
                devices=trainer.get("devices", "auto"),
                num_nodes=trainer.get("num_nodes", 1),
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
        return isinstance(probe.strategy, DDPStrategy)
    except Exception:  # noqa: BLE001 - the Trainer built next reports it in one line
        return False
    finally:
        rank_zero.setLevel(level)


DEVICE_KEYS = ("accelerator", "devices", "strategy", "num_nodes")
# Lightning's messages that do not spell the Trainer argument they come from
NAMED_IN_ERRORS = {"max_time": "Timer(duration=", "precision": "Precision '"}


def trainer_error(err: Exception, trainer: dict[str, Any]) -> str:
    """Lightning's error while building the Trainer, as one line naming the option it came
    from (the device settings only for a device error)."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    named = [k for k in trainer if re.search(rf"\b{re.escape(NAMED_IN_ERRORS.get(k, k))}", message)]
    key = max(named, key=len) if named else None  # `max_time`, not `max` of `max_time`
    if key == "max_time":
        value = trainer.get(key)
        return (
            f'--trainer.max_time: {value!r} is not a duration; use DD:HH:MM:SS or {{"minutes": 20}}'
        )
    if key in DEVICE_KEYS or key is None and any(w in message for w in ("device", "GPU", "CUDA")):
        spec = {k: trainer.get(k) for k in DEVICE_KEYS[:3]}
        return f"the trainer cannot start with {spec}: {message}"
    if key is None:
        return f"the trainer cannot start: {message}"
    return f"--trainer.{key} {trainer.get(key)!r}: {message}"


def checkpoint_info(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint holds: its family (from its hyperparameters) and, when written by this
    version, its main network and image size."""
    family = checkpoint.get("hyper_parameters", {}).get("_class_path", "")
    return {"family": family.rsplit(".", 1)[-1] or None, **checkpoint.get("monet", {})}


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Checkpoint `path` (memory-mapped), or a one-line error with the fix."""
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such file; give a .ckpt file or 'last'.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        checkpoint["state_dict"]  # noqa: B018 - a Lightning checkpoint has one
        return checkpoint
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same mistake
        raise ConfigError(
            f"--ckpt_path {path} is not a readable Lightning checkpoint ({type(err).__name__}: "
            f"{str(err)[:200]}); it may be truncated. Use another checkpoint, e.g. an older "
            "best-*.ckpt, or drop --ckpt_path to start afresh."
        ) from None


def shape(value: object) -> tuple[int, ...] | None:
    """A state-dict entry's shape (None for extra state such as the EMA's clock)."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def check_checkpoint(path: Path, model: LightningModule) -> None:
    """Fail before the first step when `path` cannot be resumed into `model`: a missing,
    truncated or foreign file, or weights of another family, network or image size."""
    checkpoint = read_checkpoint(path)
    refuse_other_model(path, checkpoint_info(checkpoint), model_info(model), "this config")
    if isinstance(model, GenerativeModule):  # the keys of checkpoints from before the one EMA
        upgrade_checkpoint(checkpoint, model.averaged)
    weights = checkpoint["state_dict"]
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    reshaped = [k for k in own if k in weights and shape(weights[k]) != shape(own[k])]
    if missing or unexpected or reshaped:
        problems = {"missing": missing, "unexpected": unexpected, "other shapes": reshaped}
        said = "; ".join(f"{n}: {', '.join(v[:3])}" for n, v in problems.items() if v)
        raise ConfigError(
            f"--ckpt_path {path} was written by another model than this config's "
            f"{type(model).__name__} ({said}): another family, network, width or image size. "
            "Use the config (and --data.image_size) the checkpoint was trained with."
        )


class _NoAdverts(logging.Filter):
    """Lightning's "Tip: try installing litlogger / litmodels" lines: nothing to act on here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in record.getMessage()


def quiet_console() -> None:
    """No warning or log line a user cannot act on, in `make demo` or any run: what Lightning
    warns about its own internals, through the switches the libraries offer."""
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")  # in Lightning's calls
    for message in (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # torch's pytree, in Lightning
        # every resume writes a new version folder: the best checkpoint starts afresh there
        r"The dirpath has changed from",
    ):
        warnings.filterwarnings("ignore", message)
    for package in ("lightning.pytorch", "lightning.fabric"):  # where rank_zero_info logs
        logger = logging.getLogger(f"{package}.utilities.rank_zero")
        if not any(isinstance(f, _NoAdverts) for f in logger.filters):
            logger.addFilter(_NoAdverts())


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and with `run`, execute) the CLI; `args` replaces sys.argv so tests call it."""
    quiet_console()
    return MonetCLI(
        LightningModule,
        MonetDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_callback=SaveConfig,
        seed_everything_default=42,
    )


def main() -> None:
    keep_freed_memory()  # CPU steps reuse their buffers instead of page-faulting them in anew
    try:
        cli_main()
    except (MonetError, MisconfigurationException) as err:  # wrong input: what and the fix
        print(f"monet: error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:  # SIGTERM: what was written is whole (the callbacks said what)
        print(f"monet: {err}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
