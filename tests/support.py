"""What the tests share: small real data sets (Kaggle-layout TFRecords, JPEG folders, zips, a
holiday folder), the configs and the arguments that shrink them to seconds on a CPU, quiet
Trainers, and the one-line error of `python -m monet`. The fixtures that use them are in
conftest.py; test files import these with `from support import ...` (pytest's `pythonpath`
puts tests/ on sys.path)."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tfrecord import TFRecordWriter
from torchmetrics.image.fid import NoTrainInceptionV3


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


def holiday(root: Path) -> Path:
    """A folder as a user has it: photos in nested folders of any name, and other files."""
    photos = {
        "beach/IMG_0003.jpg": "JPEG",
        "beach/IMG_0010.PNG": "PNG",
        "city/2024/May/DSC1.jpeg": "JPEG",
        "IMG_0001.webp": "WEBP",
    }
    for (relative, fmt), array in zip(photos.items(), random_images(4, 24, seed=3)):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(jpeg_bytes(array, "RGB", fmt))
    (root / "notes.txt").write_text("where we went")
    (root / "beach" / "video.mov").write_bytes(b"\0" * 10)
    (root / ".DS_Store").write_bytes(b"\0")  # hidden: skipped without a word
    return root


HOLIDAY = ["IMG_0001.webp", "beach/IMG_0003.jpg", "beach/IMG_0010.PNG", "city/2024/May/DSC1.jpeg"]


ROOT = Path(__file__).resolve().parents[1]

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks' shared helpers, `common`
from common import shrink_nets  # noqa: E402, F401 (the tests import it from here)


def small(config: Path, data: Path, out: Path, *extra: str, logger: str = "csv") -> list[str]:
    """Arguments that shrink a config to a few seconds on a CPU; a CSV logger unless asked."""
    args = [
        "--config",
        str(config),
        "--data.root",
        str(data),
        "--data.image_size",
        "32",
        "--data.batch_size",
        "4",
        "--trainer.default_root_dir",
        str(out),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
    ]
    if logger == "csv":  # W&B's offline service costs seconds a run; its own test covers it
        args += ["--trainer.logger.class_path", "lightning.pytorch.loggers.CSVLogger"]
    return [*args, "--trainer.logger.init_args.save_dir", str(out), *extra]


def quiet_trainer(tmp_path: Path, **kw):
    """A CPU Trainer (2 steps by default) that logs, checkpoints and validates nothing unless
    `kw` asks for it."""
    import lightning as L

    kw = {
        "max_steps": 2,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "default_root_dir": tmp_path,
        "accelerator": "cpu",
        **kw,
    }
    return L.Trainer(**kw)


def quick_fit(model, data_dir: Path, tmp_path: Path, batch_size: int = 4, **kw):
    """A real quiet_trainer fit on 32 px images of `data_dir`."""
    from monet.data import MonetDataModule

    trainer = quiet_trainer(tmp_path, **kw)
    trainer.fit(model, MonetDataModule(str(data_dir), image_size=32, batch_size=batch_size))
    return trainer


class RandomInception(NoTrainInceptionV3):
    """The FID Inception architecture, left at its random initialisation."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def one_line_error(args: list[str], capsys, monkeypatch) -> str:
    """`python -m monet ARGS`, in-process: it exits with 2 and one `monet: error:` line, with no
    traceback and no usage text; returns that line."""
    import sys

    from monet.__main__ import main

    monkeypatch.setattr(sys, "argv", ["monet", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err[-2000:]
    assert "Traceback" not in err and "usage:" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("monet: error:")]
    return line
