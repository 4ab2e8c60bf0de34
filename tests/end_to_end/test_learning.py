"""Training works: a tiny model of each family, trained for seconds on a handful of images
through the real CLI (Trainer, diffusion process, sampler, `predict`'s export), makes images
measurably closer to them than the same model did before training.

The distance is the suite's sliced Wasserstein distance over Laplacian-pyramid patches
(`monet.metrics.swd`, what `benchmarks/quality.py` reports), from 16 generated images to the
training images: it sees colours, contrast and layout. Trained images must be at most 0.7x as far
as the untrained model's and 0.7x as far as uniform noise: a model whose training or sampler
is broken into making noise fails (checked by replacing the denoiser's output with noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import ROOT, small

from monet.__main__ import cli_main
from monet.metrics import sliced_wasserstein_distance

pytestmark = pytest.mark.slow


def landscapes(folder: Path, n: int = 8, size: int = 32) -> torch.Tensor:
    """`n` two-tone landscapes (a sky above a horizon, land or water below, each its own
    colours and horizon), written as JPEGs into `folder`; returned as floats in [0, 1]."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    images = []
    for i in range(n):
        sky, ground = rng.integers(0, 256, (2, 3))
        horizon = rng.integers(size // 4, 3 * size // 4)
        rows = np.arange(size)[:, None, None]
        shade = np.linspace(1.0, 0.7, size)[:, None, None]  # darker towards the bottom
        image = np.where(rows < horizon, sky, ground) * shade * np.ones((size, size, 3))
        image = image.clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:03d}.jpg", quality=95)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    return torch.stack(images)


def distance(images: torch.Tensor, training: torch.Tensor) -> float:
    """SWD of `images` to the training images ([0, 1]), as `benchmarks/quality.py` measures."""
    swd = sliced_wasserstein_distance(training * 2 - 1, images * 2 - 1, normalise="reference")
    return swd.mean


def predicted(folder: Path) -> torch.Tensor:
    files = sorted(folder.glob("*.png"))
    assert len(files) == 16
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def trained_vs_untrained(
    config: str, tmp_path: Path, size: int, steps: int, *model: str
) -> tuple[float, float, float]:
    """SWDs of 16 images of the untrained model, of the trained model and of noise."""
    training = landscapes(tmp_path / "data" / "monet_jpg", size=size)
    args = small(
        ROOT / "configs" / config,
        tmp_path / "data",
        tmp_path,
        "--data.image_size",
        str(size),
        "--data.batch_size",
        "8",
        "--trainer.enable_progress_bar",
        "false",
        "--metrics.inception",
        "false",
        "--trainer.limit_val_batches",
        "0",  # no validation, so no metrics: the test measures the images itself
        *model,
    )

    def export(name: str, *ckpt: str) -> torch.Tensor:
        out = tmp_path / name
        cli_main(
            ["predict", *args, *ckpt, "--data.predict_size", "16", "--export.size", str(size)]
            + ["--export.output", str(out), "--export.format", "png"]
        )
        return predicted(out)

    before = export("untrained")
    cli_main(["fit", *args, "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1"])
    after = export("trained", "--ckpt_path", "last")
    noise = torch.rand(after.shape, generator=torch.Generator().manual_seed(0))
    return tuple(distance(x, training) for x in (before, after, noise))


FAMILIES = {  # config, px, steps, and settings that make a tiny model learn in seconds
    "diffusion": (
        "ddpm_small.yaml",
        16,
        400,
        ["--model.init_args.denoiser.init_args.dim", "16"]
        + ["--model.init_args.denoiser.init_args.dim_mults", "[1, 2]"]
        + ["--model.init_args.optimizer.init_args.lr", "2e-3"],
    ),
    "GAN": (
        "fastgan.yaml",
        32,
        400,
        ["--model.init_args.generator.init_args.features", "8"]
        + ["--model.init_args.critic.init_args.features", "16"]
        + ["--model.init_args.optimizer.init_args.lr", "1e-3"]
        + ["--model.init_args.critic_optimizer.init_args.lr", "2e-3"],
    ),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tiny_model_learns_a_handful_of_images(family, tmp_path, one_thread):
    config, size, steps, settings = FAMILIES[family]
    ema = ["--model.init_args.ema.half_life", "500"]
    before, after, noise = trained_vs_untrained(config, tmp_path, size, steps, *settings, *ema)
    print(f"{family} SWD: untrained {before:.0f}, trained {after:.0f}, noise {noise:.0f}")
    assert after < 0.7 * min(before, noise)
