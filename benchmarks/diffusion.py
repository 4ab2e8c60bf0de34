"""Diffusion speed: train steps/s of ddpm_lib's LibUnet next to lucidrains' denoising-diffusion-
pytorch Unet (same dim, dim_mults, image size and batch), in fp32 and bf16 autocast; and the wall
time of DDIM-50 against 1,000-step DDPM sampling.

    pip install -e ".[bench]"      # denoising-diffusion-pytorch, for the reference only
    python benchmarks/diffusion.py [--image-size 128] [--batch-size 32] [--steps 3]

A train step is what each trainer does per batch: draw t and noise, the network's forward, the
loss, backward and an Adam step. Monet's step uses its GaussianDiffusion (v objective, as the
ddpm_lib config); the reference uses lucidrains' own GaussianDiffusion with its defaults.
On a CPU that only emulates bf16 (no AVX512-BF16 or AMX), LibUnet computes in fp32 under bf16
autocast (its `fp32_if_bf16_emulated`); the "forced bf16" row then shows it doing the bf16 math.
"""

from __future__ import annotations

import argparse
import time

import torch

from monet.diffusion import GaussianDiffusion, sample
from monet.nets import LibUnet
from monet.nets.common import cpu_has_bf16


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def steps_per_second(loss_fn, params, steps: int, warmup: int, bf16: bool) -> float:
    opt = torch.optim.Adam(params, lr=8e-5)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sample-size", type=int, default=32)
    parser.add_argument("--sample-batch", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    size, batch = args.image_size, args.batch_size
    x0 = torch.rand(batch, 3, size, size) * 2 - 1
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; train: {size} px, "
        f"batch {batch}, {args.steps} timed steps after {args.warmup} warm-up\n"
    )

    ours = LibUnet(image_size=size, dim=64, dim_mults=(1, 2, 4, 8))
    process = GaussianDiffusion("sigmoid", 1000, objective="v", loss="l2")
    try:
        from denoising_diffusion_pytorch import GaussianDiffusion as RefDiffusion
        from denoising_diffusion_pytorch import Unet as RefUnet
    except ImportError:
        RefUnet = None
        print("(denoising-diffusion-pytorch is not installed: pip install -e '.[bench]')\n")
    header = f"{'precision':<14} | {'model':<16} | {'params':>11} | {'steps/s':>8} | {'vs ref':>6}"
    print(header + "\n" + "-" * len(header), flush=True)
    for bf16 in (False, True):
        precision = "bf16 autocast" if bf16 else "fp32"
        ref_rate = float("nan")
        if RefUnet is not None:
            ref = RefUnet(dim=64, dim_mults=(1, 2, 4, 8))
            ref_diffusion = RefDiffusion(ref, image_size=size, timesteps=1000)
            ref_rate = steps_per_second(
                lambda ref_diffusion=ref_diffusion: ref_diffusion(x0),
                ref.parameters(),
                args.steps,
                args.warmup,
                bf16,
            )
            print(
                f"{precision:<14} | {'lucidrains Unet':<16} | {n_params(ref):>11,} | "
                f"{ref_rate:>8.3f} | {1:>5.2f}x",
                flush=True,
            )
        rows = [("monet LibUnet", ours)]
        if bf16 and not cpu_has_bf16():
            # LibUnet computes in fp32 where bf16 is emulated; this row forces the bf16 math
            forced = LibUnet(size, dim=64, dim_mults=(1, 2, 4, 8), fp32_if_bf16_emulated=False)
            rows.append(("  forced bf16", forced))
        for name, net in rows:
            rate = steps_per_second(
                lambda net=net: process.loss(net, x0),
                net.parameters(),
                args.steps,
                args.warmup,
                bf16,
            )
            print(
                f"{precision:<14} | {name:<16} | {n_params(net):>11,} | {rate:>8.3f} | "
                f"{rate / ref_rate:>5.2f}x",
                flush=True,
            )

    small = LibUnet(image_size=args.sample_size, dim=64, dim_mults=(1, 2, 4, 8))
    noise = torch.randn(args.sample_batch, 3, args.sample_size, args.sample_size)
    print(f"\nsampling: LibUnet at {args.sample_size} px, batch {args.sample_batch}, T = 1000")
    header = f"{'sampler':<10} | {'network calls':>13} | {'seconds':>8} | {'speed-up':>8}"
    print(header + "\n" + "-" * len(header))
    times = {}
    for name, sampler, steps in (("DDPM", "ddpm", None), ("DDIM-50", "ddim", 50)):
        start = time.perf_counter()
        sample(process, small, noise, sampler, steps)
        times[name] = time.perf_counter() - start
        print(
            f"{name:<10} | {steps or 1000:>13} | {times[name]:>8.2f} | "
            f"{times['DDPM'] / times[name]:>7.1f}x"
        )


if __name__ == "__main__":
    main()
