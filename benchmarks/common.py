"""What the benchmark scripts share: data to run on when MONET_DATA is not set."""

from __future__ import annotations

import os
from pathlib import Path

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
