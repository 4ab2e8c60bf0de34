"""Photo -> Monet translation steps/s under Lightning next to a plain PyTorch loop of the same step.

    MONET_DATA=../shared/data python benchmarks/translation.py [--batches 1 4] [--steps 4]

For `configs/cyclegan_128.yaml` at 128 px and `configs/cyclegan.yaml` at 256 px, each at the
given batch sizes (the configs' own is 1), the model is built twice from its YAML with the same
seed: once for a Lightning `Trainer.fit` (NaN guard, EMA and logging as in a real run; no
checkpoints, validation or progress bar), once for the hand-written loop of `benchmarks/train.py`
(`cyclegan_step`: both generators, the pool, both critics; the same paired, augmented batches).
A step is one training batch: one generator and one discriminator update. The sample quality
after a CPU budget is `benchmarks/quality.py configs/cyclegan_128.yaml --minutes 20`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import data_root, quiet
from train import lightning_rate, plain_rate

from monet.runtime.malloc import keep_freed_memory

RUNS = (("cyclegan_128", 128), ("cyclegan", 256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256], choices=[128, 256])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="report the best of this many")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    quiet()
    keep_freed_memory()
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    name = torch.cuda.get_device_name() if args.accelerator == "gpu" else "CPU"
    print(
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads, 32-true; best of "
        f"{args.rounds} rounds of {args.steps} steps after {args.warmup}; data {root}\n"
    )
    header = (
        f"{'config':<13} | {'px':>4} | {'batch':>5} | {'lightning it/s':>14} | "
        f"{'plain it/s':>10} | {'overhead':>8} | {'photos/s':>8}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    for config, size in RUNS:
        if size not in args.sizes:
            continue
        for batch in args.batches:
            opts = argparse.Namespace(**vars(args), image_size=size, batch_size=batch)
            lightning, plain = 0.0, 0.0
            for _ in range(args.rounds):  # alternate, so drifts in machine speed hit both
                lightning = max(lightning, lightning_rate(config, root, "32-true", opts))
                plain = max(plain, plain_rate(config, root, "32-true", opts)[0])
            print(
                f"{config:<13} | {size:>4} | {batch:>5} | {lightning:>14.3f} | {plain:>10.3f} | "
                f"{1 - lightning / plain:>7.1%} | {lightning * batch:>8.2f}",
                flush=True,
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
