"""Where a run's files go: the folder Lightning puts its checkpoints in, less `checkpoints/`."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """`<save_dir>/<name>/<version>` of the first logger (as Lightning resolves checkpoint
    folders, for CSV and W&B alike), else the trainer's default_root_dir."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version
