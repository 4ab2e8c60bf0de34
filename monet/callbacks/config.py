"""The run's full config beside its checkpoints (and in W&B), and in every checkpoint a record
of the model that wrote it, so `--ckpt_path` with another config is refused before anything is
built (monet/cli/main.py reads it)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from monet.models.common import GenerativeModule
from monet.runtime.rundir import run_dir


class SaveConfig(SaveConfigCallback):
    """The full config into the run folder (beside its checkpoints) and into W&B."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved or trainer.fast_dev_run:
            return
        if trainer.is_global_zero:
            path = run_dir(trainer) / self.config_filename
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config, path, skip_unset=False, overwrite=True, multifile=self.multifile
            )
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_hyperparams({"config": self.config.as_dict()})
        self.already_saved = True

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint) -> None:
        """What the checkpoint holds, so that another config is refused before it is built."""
        checkpoint["monet"] = model_info(pl_module)


def model_info(model: LightningModule) -> dict[str, Any]:
    """The family, main network (the one that samples) and image size of a built model."""
    net = getattr(model, model.averaged) if isinstance(model, GenerativeModule) else None
    return {
        "family": type(model).__name__,
        "network": type(net).__name__ if net is not None else None,
        "image_size": getattr(net, "image_size", None),
    }
