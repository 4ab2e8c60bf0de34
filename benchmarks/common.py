"""What the benchmark scripts (and the tests) share: data to run on when MONET_DATA is not set,
and networks shrunk for runs of a few seconds on a CPU."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def synthetic_folder(root: Path, n: int = 300, photos: int = 64) -> Path:
    """A Kaggle-layout folder of smooth random 256 px JPEGs: `n` under `root/monet_jpg` and
    `photos` under `root/photo_jpg`."""
    rng = np.random.default_rng(0)
    for domain, count in (("monet", n), ("photo", photos)):
        folder = root / f"{domain}_jpg"
        folder.mkdir(parents=True)
        for i in range(count):
            small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            small.resize((256, 256), Image.BICUBIC).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def data_root(scratch: Path) -> Path:
    """MONET_DATA when set, else a synthetic folder written under `scratch`."""
    return Path(os.environ.get("MONET_DATA") or synthetic_folder(scratch))


SMALL_NETS = {  # network class -> (init arg, small value); others run at their full size
    "WGANGenerator": ("generator", "features", "4"),
    "WGANCritic": ("critic", "features", "4"),
    "DCGANGenerator": ("generator", "widths", "[32,16,8,8,8]"),
    "DCGANDiscriminator": ("critic", "widths", "[4,8,8,8]"),
    "SimpleUnet": ("denoiser", "dim", "8"),
    "AttnUnet": ("denoiser", "dim", "8"),
    "LibUnet": ("denoiser", "dim", "8"),
    "FastGANGenerator": ("generator", "features", "8"),
    "FastGANDiscriminator": ("critic", "features", "4"),
    "ResnetGenerator": ("generator", "features", "4"),
    "PatchDiscriminator": ("critic", "features", "4"),
}


def small_nets(config: Path) -> list[str]:
    """KEY=VALUE overrides that shrink the config's networks (`SMALL_NETS`)."""
    text = config.read_text()
    return [
        f"model.init_args.{slot}.init_args.{key}={value}"
        for cls, (slot, key, value) in SMALL_NETS.items()
        if f"monet.nets.{cls}" in text
    ]


def shrink_nets(config: Path) -> list[str]:
    """The same as command-line arguments: --KEY VALUE ..."""
    return [
        arg
        for kv in small_nets(config)
        for arg in ("--" + kv.partition("=")[0], kv.partition("=")[2])
    ]


def quiet() -> None:
    """Lightning's info lines and warnings off: a benchmark prints its table only."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def bench_trainer(accelerator: str, callbacks: list, **kw: Any):
    """A one-device Trainer that only trains: no logger, checkpoints, validation or bars."""
    import lightning as L

    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        **kw,
    )
