"""Fixtures that write small real data sets: Kaggle-layout TFRecords and JPEG folders, a zip."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tfrecord import TFRecordWriter


def jpeg_bytes(array: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buf, fmt, quality=95)
    return buf.getvalue()


def random_images(n: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour images (JPEG keeps them close to the originals)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return [np.asarray(Image.fromarray(s).resize((size, size), Image.BILINEAR)) for s in small]


def write_tfrecord(path: Path, items: list[tuple[str, bytes]]) -> Path:
    """Write records with the Kaggle features: image_name, image, target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = TFRecordWriter(str(path))
    for name, data in items:
        writer.write(
            {
                "image_name": (name.encode(), "byte"),
                "image": (data, "byte"),
                "target": (b"monet", "byte"),
            }
        )
    writer.close()
    return path


def make_kaggle_dir(
    root: Path, n: int = 12, size: int = 48, shards: int = 2, photos: int = 5
) -> Path:
    """A Kaggle-layout folder: monet_tfrec/, monet_jpg/, photo_tfrec/, photo_jpg/."""
    for domain, count, seed in (("monet", n, 0), ("photo", photos, 1)):
        images = random_images(count, size, seed)
        items = [(f"{domain}{i:03d}", jpeg_bytes(a)) for i, a in enumerate(images)]
        per = -(-count // shards)
        for s in range(shards):
            write_tfrecord(
                root / f"{domain}_tfrec" / f"{domain}{s:02d}-{per}.tfrec",
                items[s * per : (s + 1) * per],
            )
        (root / f"{domain}_jpg").mkdir(parents=True, exist_ok=True)
        for name, data in items:
            (root / f"{domain}_jpg" / f"{name}.jpg").write_bytes(data)
    return root


def make_kaggle_zip(root: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    return path


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    return make_kaggle_dir(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    """The real Kaggle data, where MONET_DATA points at it."""
    root = os.environ.get("MONET_DATA")
    if not root or not (Path(root) / "monet_tfrec").is_dir():
        pytest.skip("set MONET_DATA to the Kaggle data folder to run this test")
    return Path(root)
