"""What the tests share: small real data sets (Kaggle-layout TFRecords, JPEG folders, zips, a
holiday folder), the configs and the arguments that shrink them to seconds on a CPU, quiet
Trainers and fits of whole configs through the CLI, the one-line error of `python -m monet`,
images like paintings, oracle denoisers and a tiny GAN. The fixtures that use them are in
conftest.py; test files import these with `from support import ...` (pytest's `pythonpath`
puts tests/ on sys.path)."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tfrecord import TFRecordWriter
from torch import nn
from torchmetrics.image.fid import NoTrainInceptionV3

from monet.diffusion import GaussianDiffusion, make_betas, rescale_zero_terminal_snr


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


# -- metrics: images like paintings ------------------------------------------------------------


def paintings(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """n images in [-1, 1]: real Monet paintings where MONET_DATA is set, else structured ones."""
    root = os.environ.get("MONET_DATA")
    if root and (Path(root) / "monet_jpg").is_dir():
        from torchvision.io import decode_jpeg, read_file

        files = sorted((Path(root) / "monet_jpg").glob("*.jpg"))[seed : seed + n]
        x = torch.stack([decode_jpeg(read_file(str(f))) for f in files]).float() / 127.5 - 1
        return F.interpolate(x, size=size, mode="area")
    g = torch.Generator().manual_seed(seed)
    # Smooth colour fields plus oriented strokes: low and mid frequencies, like paintings.
    base = F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=size, mode="bicubic")
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    angle = torch.rand(n, 1, 1, 1, generator=g) * 3.1416
    freq = 0.3 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    strokes = torch.sin(freq * (xx * angle.cos() + yy * angle.sin()))
    return (0.7 * base + 0.3 * strokes * torch.rand(n, 3, 1, 1, generator=g)).clamp(-1, 1)


# -- diffusion: oracle denoisers ---------------------------------------------------------------

OBJECTIVES = ("eps", "x0", "v")


def alpha_bar(process: GaussianDiffusion) -> torch.Tensor:
    """alpha-bar computed here from the schedule, independently of the process's buffers."""
    betas = make_betas(process.schedule, process.timesteps)
    if process.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return torch.cumprod(1 - betas, 0)


def oracle(process: GaussianDiffusion, x0: torch.Tensor) -> nn.Module:
    """A denoiser that knows x0 and returns the exact target of `process.objective` at x_t."""

    class Oracle(nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            ab = alpha_bar(process)[t].view(-1, 1, 1, 1)
            a, s = ab.sqrt(), (1 - ab).sqrt()
            eps = (x_t.double() - a * x0.double()) / s
            out = {"eps": eps, "x0": x0.double(), "v": a * eps - s * x0.double()}
            return out[process.objective].to(x_t.dtype)

    return Oracle()


class TinyDenoiser(nn.Module):
    """A fixed, time-dependent, non-oracle network."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.modes: list[bool] = []

    def forward(self, x, t):
        self.modes.append(self.training)
        return torch.tanh(self.bn(self.conv(x))) * (1 + t.view(-1, 1, 1, 1) / 100)


# -- GANs --------------------------------------------------------------------------------------


def tiny_gan(size=32, **kw):
    """A GAN of two tiny WGAN networks."""
    from monet.models import GAN
    from monet.nets import WGANCritic, WGANGenerator

    return GAN(
        WGANGenerator(latent_dim=8, features=4, image_size=size),
        WGANCritic(features=4, image_size=size),
        **kw,
    )


def trainer(tmp_path, **kw):
    """A quiet_trainer of 14 steps unless `kw` says otherwise."""
    return quiet_trainer(tmp_path, **{"max_steps": 14, **kw})


# -- fits of whole configs through the CLI -----------------------------------------------------

WGAN_GP = ROOT / "configs" / "wgan_gp.yaml"
FEW = ["--trainer.max_epochs", "2", "--trainer.max_steps", "-1"]
FEW += ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]


def fit_few_epochs(data, out, *extra, logger="csv", config=WGAN_GP):
    """A CLI fit of `config` (wgan_gp) for two short epochs: 3 training batches, 1 validation
    batch each."""
    from monet.__main__ import cli_main

    args = small(config, data, out, *FEW, *extra, logger=logger)
    return cli_main(["fit", *args, *shrink_nets(config)])


CYCLEGAN = ROOT / "configs" / "cyclegan.yaml"


def run_fit(data: Path, out: Path, *extra: str, config: Path = CYCLEGAN):
    """A CLI fit of `config` (the CycleGAN) at test size, without Inception."""
    from monet.__main__ import cli_main

    args = small(config, data, out, "--metrics.inception", "false", *extra, *shrink_nets(config))
    return cli_main(["fit", *args])
