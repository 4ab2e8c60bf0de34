"""Steps a minute of the small diffusion recipe's U-Net shapes at 32 px, one thread: the shape
ddpm_small had (lucidrains' two ResNet blocks a level, attention at every level) next to the one
it has now (one block a level, no attention at 32 px) and the steps between.

    OMP_NUM_THREADS=1 python benchmarks/small_unet.py [--rounds 5] [--steps 3]

A step is what the recipe's trainer does per batch of 32: the v-objective Min-SNR loss, backward
and an Adam step. The shapes are timed in alternating rounds (median), so a machine's load
shifts them alike; the ratio to the old shape is the number to read.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from monet.diffusion import GaussianDiffusion
from monet.nets import LibUnet

BASE = dict(image_size=32, dim=32, dim_mults=(1, 2, 4), attn_heads=4, attn_dim_head=16)
SHAPES = {
    "before: 2 blocks a level, attention at every level": {},
    "2 blocks a level, no attention at 32 px": {"attn_from_level": 1},
    "now: 1 block a level, no attention at 32 px": {"blocks": 1, "attn_from_level": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    process = GaussianDiffusion("cosine", 1000, "v", loss="l2", min_snr_gamma=5.0)
    nets = {name: LibUnet(**BASE, **kw) for name, kw in SHAPES.items()}
    opts = {name: torch.optim.Adam(net.parameters(), lr=1e-3) for name, net in nets.items()}
    x0 = torch.rand(args.batch_size, 3, 32, 32) * 2 - 1
    seconds: dict[str, list[float]] = {name: [] for name in nets}
    for round_ in range(args.rounds + 1):  # the first round warms up
        for name, net in nets.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = process.loss(net, x0)
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()
            if round_:
                seconds[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(seconds[next(iter(nets))])
    print(f"\n32 px, batch {args.batch_size}, {torch.get_num_threads()} thread(s)")
    header = f"{'LibUnet shape':<52} | {'params':>7} | {'steps/min':>9} | vs before"
    print(header + "\n" + "-" * len(header))
    for name, net in nets.items():
        step = statistics.median(seconds[name])
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{name:<52} | {params:>6.2f}M | {60 / step:>9.1f} | {base / step:.2f}x")


if __name__ == "__main__":
    main()
