"""`python -m monet fit --config configs/wgan_gp.yaml`: the LightningCLI entry point."""

from __future__ import annotations

import sys

from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningCLI

from monet.data import MonetDataModule
from monet.errors import MonetError


class MonetCLI(LightningCLI):
    """LightningCLI whose networks take their image size from `data.image_size`."""

    NETWORK_KEYS = ("generator", "critic", "denoiser")

    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: a link for each network slot the families have; a slot the
        # chosen model lacks is skipped, so every family shares this CLI.
        for key in self.NETWORK_KEYS:
            parser.link_arguments("data.image_size", f"model.init_args.{key}.init_args.image_size")

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


def cli_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and with `run`, execute) the CLI; `args` replaces sys.argv so tests call it."""
    return MonetCLI(
        LightningModule,
        MonetDataModule,
        subclass_mode_model=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def main() -> None:
    try:
        cli_main()
    except MonetError as err:  # the user's input is wrong: say what and how to fix it
        print(f"monet: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
