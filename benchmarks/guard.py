"""The cost of NonFiniteGuard per training batch: the same config trained with and without it,
in alternating rounds of the same run (the median of each), at small CPU-friendly sizes.

    MONET_DATA=../shared/data python benchmarks/guard.py [--configs ddpm_lib fastgan]

The trainer takes the config's precision, gradient clipping and accumulation (ddpm_lib: bf16,
clipping at 1.0, 2 batches a step, an Adam built unfused that the guard runs fused), with
narrower networks than the configs' (`SMALL`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from common import bench_trainer, data_root, quiet
from train import ROOT, Clock, device_of

from monet.__main__ import cli_main
from monet.callbacks import NonFiniteGuard

SMALL = {  # narrow networks, so that a CPU run takes a minute (--set overrides them)
    "ddpm_lib": ["model.init_args.denoiser.init_args.dim=16"],
    "fastgan": [f"model.init_args.{net}.init_args.features=8" for net in ("generator", "critic")],
}


def ms_per_batch(config: str, root: Path, guard: bool, args) -> float:
    cli = cli_main(
        [
            *("--config", str(ROOT / "configs" / f"{config}.yaml"), f"--data.root={root}"),
            f"--data.image_size={args.image_size}",
            f"--data.batch_size={args.batch_size}",
            *("--trainer.logger=false", "--trainer.callbacks=[]"),
            *(f"--{override}" for override in [*SMALL.get(config, []), *args.set]),
        ],
        run=False,
    )
    clock = Clock(args.warmup, args.steps)
    t = cli.trainer
    trainer = bench_trainer(
        args.accelerator,
        [clock, *([NonFiniteGuard()] if guard else [])],
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=t.accumulate_grad_batches,
    )
    trainer.fit(cli.model, cli.datamodule)
    return 1000 / clock.rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["ddpm_lib", "fastgan"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=4, help="untimed batches first")
    parser.add_argument("--rounds", type=int, default=3, help="runs with and without the guard")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    quiet()
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    device = device_of(args)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.image_size} px, batch {args.batch_size}; median of {args.rounds} runs of "
        f"{args.steps} batches after {args.warmup}, with and without the guard alternating\n"
    )
    header = f"{'config':<10} | {'no guard':>9} | {'guard':>9} | {'cost':>7} | {'spread':>7}"
    print(header + "  (ms per batch)\n" + "-" * len(header), flush=True)
    for config in args.configs:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for guard in (False, True):
                runs[guard].append(ms_per_batch(config, root, guard, args))
        off, on = (statistics.median(runs[g]) for g in (False, True))
        spread = max(max(r) - min(r) for r in runs.values())  # run-to-run noise
        print(
            f"{config:<10} | {off:>9.1f} | {on:>9.1f} | {on / off - 1:>+6.1%} | "
            f"{spread / off:>6.1%}",
            flush=True,
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
