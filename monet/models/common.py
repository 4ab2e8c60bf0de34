"""Checks shared by the LightningModules."""

from __future__ import annotations

import lightning as L

from monet.errors import ConfigError


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
