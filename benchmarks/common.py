"""What the benchmark scripts share: data to run on when MONET_DATA is not set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_folder(root: Path, n: int = 300) -> Path:
    """A Kaggle-layout folder of `n` smooth random 256 px JPEGs under `root/monet_jpg`."""
    folder = root / "monet_jpg"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        small.resize((256, 256), Image.BICUBIC).save(folder / f"{i:04d}.jpg", quality=90)
    return root


def data_root(scratch: Path) -> Path:
    """MONET_DATA when set, else a synthetic folder written under `scratch`."""
    return Path(os.environ.get("MONET_DATA") or synthetic_folder(scratch))
