"""The sampler table: one trained diffusion checkpoint sampled by every sampler at about 10, 25,
50 and 100 network evaluations, against the paintings.

    MONET_DATA=../shared/data python benchmarks/samplers.py configs/ddpm_small.yaml RUN/last.ckpt \
        --size 32 --set data.image_size=32

The model is built from the config (as `predict` builds it) and given the checkpoint's weights;
each row draws the same `--num` images (seeds 0..num-1, as `predict`) with the sampling (EMA)
network, and compares them with the paintings as `benchmarks/quality.py` does: SWD over 7x7
Laplacian-pyramid patches (x1e3) and its multiple of the real-vs-real floor, near-copies of
training paintings, and contrast: the samples' per-channel pixel std over the paintings'
(1.00 = the paintings'; haze is well below 1). Heun takes 2 x steps - 1 evaluations.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from common import data_root, quiet
from quality import contrast, generate, paintings_and_photos, share

from monet.__main__ import cli_main
from monet.metrics import sliced_wasserstein_distance

EVALUATIONS = (10, 25, 50, 100)


def steps_for(sampler: str, evaluations: int) -> int:
    """The solver steps that take about `evaluations` network evaluations."""
    return max(1, (evaluations + 1) // 2) if sampler == "heun" else evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("ckpt")
    parser.add_argument("--num", type=int, default=150)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samplers", nargs="*", default=["ddim", "heun", "dpmpp_2m"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    quiet()
    os.environ.setdefault("WANDB_MODE", "offline")
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    training, (half_a, half_b), _ = paintings_and_photos(root, args)
    cli = cli_main(
        ["--config", args.config, *(f"--{s}" for s in args.set), f"--data.root={root}"]
        + [f"--trainer.default_root_dir={tmp.name}", "--metrics.inception=false"],
        run=False,
    )
    model = cli.model
    model.load_state_dict(
        torch.load(args.ckpt, map_location="cpu", weights_only=False)["state_dict"]
    )
    model.eval()
    floor = sliced_wasserstein_distance(half_b, half_a, normalise="reference").mean
    paintings_std = half_b.std(dim=(0, 2, 3))
    print(f"\n{Path(args.ckpt).name} of {Path(args.config).stem}; floor (real vs real) {floor:.1f}")
    header = (
        f"{'sampler':<9} | {'evaluations':>11} | {'SWD':>6} | {'x floor':>7} | "
        f"{'near-copies':>11} | {'contrast':>8} | s"
    )
    print(header + "\n" + "-" * len(header))
    for sampler in args.samplers:
        for evaluations in EVALUATIONS:
            model.sampler, model.sampling_steps = sampler, steps_for(sampler, evaluations)
            done = 2 * model.sampling_steps - 1 if sampler == "heun" else evaluations
            start = time.perf_counter()
            images = generate(model, torch.arange(args.num), args.size)
            seconds = time.perf_counter() - start
            swd = sliced_wasserstein_distance(half_b, images, normalise="reference").mean
            print(
                f"{sampler:<9} | {done:>11} | {swd:>6.1f} | {swd / floor:>7.2f} | "
                f"{share(images, training):>10.1%} | {contrast(images, paintings_std):>8.2f} | "
                f"{seconds:.0f}",
                flush=True,
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
