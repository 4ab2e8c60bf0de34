"""One command that measures a GPU: training images/s of every shipped config at its own size,
the share of the GPU's bf16 matmul peak, host syncs per step, and 3-minute quality rows.

    make bench-gpu            # one CUDA GPU, about 10 minutes (MONET_DATA: the Kaggle data)
    make bench-gpu SMOKE=1    # the same path on a CPU: a config a family, 32 px, batch 4,
                              # shrunk networks, a few steps, compile traced by dynamo only

Throughput rows: a Lightning `Trainer.fit` of each config (`benchmarks/train.py`'s
`lightning_clock`: the NaN guard and EMA as in a real run; no logger, checkpoints or
validation) at the config's own data.image_size and batch size, on synthetic 256 px paintings
(speed does not depend on what the pixels show), under 32-true, bf16-mixed, and for
`COMPILED` configs bf16-mixed with `channels_last` and `compile` (a GAN critic with a gradient
penalty or R1 stays eager: `compilable()`). The warm-up steps, a compile among them, are timed
apart ("warm-up s") and left out of images/s. GFLOP/step: `torch.utils.flop_counter` over one
cycle of `benchmarks/train.py`'s plain loop (the same work as the Lightning step); "of bf16
peak" is GFLOP/step x steps/s over the bf16 `torch.mm` peak measured at the start of the run
(every row, 32-true too). syncs/step: `aten::_local_scalar_dense` calls per training batch
that the loggers do not log (`benchmarks/syncs.py`, as tests/end_to_end/test_syncs.py counts
them), in a run of
the shipped config with every callback, a CSV logger and the progress bar, at its own
precision. Then `benchmarks/quality.py --minutes 3` for ddpm_lib and fastgan.

Time: the throughput part stops starting configs after `--budget` seconds (the rest print
"skipped (time budget)"); the configs with a compiled row and one per family go first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import quiet, small_nets, synthetic_folder
from syncs import count_syncs
from train import ROOT, device_of, lightning_clock, matmul_peak, plain_rate

from monet.__main__ import cli_main
from monet.runtime.malloc import keep_freed_memory

# Every shipped config. The first three are one per family and the compiled ones; next, one
# for each other network (WGAN, DCGAN, SimpleUnet, AttnUnet, the 256 px CycleGAN); last, the
# configs whose networks are already measured (recipes: DiffAugment, R1, another schedule).
CONFIGS = (
    "fastgan",
    "ddpm_lib",
    "cyclegan_128",
    "wgan_gp",
    "dcgan",
    "ddpm_unet_linear",
    "ddpm_attn_linear",
    "cyclegan",
    "wgan_gp_diffaug",
    "dcgan_diffaug",
    "ddpm_attn_cosine",
    "ddpm_small",
)
COMPILED = ("fastgan", "ddpm_lib")  # a compile costs a minute or more: the two quality configs
FAST = ("model.init_args.channels_last=true", "model.init_args.compile=true")
QUALITY = ("ddpm_lib", "fastgan")
FAMILIES = {"GAN": "GAN", "Diffusion": "diffusion", "CycleGAN": "CycleGAN"}


def variants(config: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(precision, mode, overrides) of the config's rows."""
    rows = [("32-true", "eager", ()), ("bf16-mixed", "eager", ())]
    return rows + ([("bf16-mixed", "NHWC+compile", FAST)] if config in COMPILED else [])


def options(args, **kw) -> argparse.Namespace:
    """What train.py's build/lightning_clock/plain_rate read."""
    size, batch = (32, 4) if args.smoke else (None, None)  # None: the config's own
    base = dict(image_size=size, batch_size=batch, accelerator=args.accelerator, set=[])
    return argparse.Namespace(**{**base, **kw})


def shrunk(args, config: str) -> list[str]:
    return small_nets(ROOT / "configs" / f"{config}.yaml") if args.smoke else []


def syncs_per_step(config: str, root: Path, out: Path, args) -> tuple[str, int, int, float]:
    """(family, px, batch, mean syncs per non-logging batch) of the shipped config's trainer
    (every callback, a CSV logger, the progress bar) over 24 optimizer steps (smoke: 8),
    logging every 4th."""
    sizes = ["--data.image_size=32", "--data.batch_size=4"] if args.smoke else []
    cli = cli_main(
        [
            "--config",
            str(ROOT / "configs" / f"{config}.yaml"),
            f"--data.root={root}",
            *sizes,
            *(f"--{kv}" for kv in shrunk(args, config)),
            "--trainer.logger.class_path=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={out}",
            f"--trainer.default_root_dir={out}",
            f"--trainer.accelerator={args.accelerator}",
            "--trainer.devices=1",
            f"--trainer.max_steps={4 if args.smoke else 24}",
            "--trainer.max_epochs=-1",
            "--trainer.log_every_n_steps=4",
            "--trainer.enable_progress_bar=true",
            "--trainer.limit_val_batches=0",  # validation is not a training step
            "--metrics.inception=false",
        ],
        run=False,
    )
    dm = cli.datamodule
    family = FAMILIES.get(type(cli.model).__name__, type(cli.model).__name__)
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar, off the table
        batches = count_syncs(cli.trainer, cli.model, dm)
    quiet = [n for logs, n in batches if not logs]
    return family, dm.image_size, dm.batch_size, sum(quiet) / max(1, len(quiet))


def flops_per_step(config: str, root: Path, args) -> float:
    """FLOPs of a training step: one cycle of the plain loop (two cycles run)."""
    opts = options(args, set=shrunk(args, config), warmup=1, steps=1)
    return plain_rate(config, root, "32-true", opts)[1]


def failed(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0]
    return f"failed: {text[:90]}"


def throughput(args, root: Path, scratch: Path, peak: float, start: float) -> None:
    header = (
        f"{'config':<16} | {'family':<9} | {'px':>3} | {'batch':>5} | {'precision':<10} | "
        f"{'mode':<12} | {'images/s':>9} | {'warm-up s':>9} | {'GFLOP/step':>10} | "
        f"{'of bf16 peak':>12} | {'syncs/step':>10}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    for config in args.configs:
        if time.perf_counter() - start > args.budget:
            for precision, mode, _ in variants(config):
                print(f"{config:<16} | {precision:<10} | {mode:<12} | skipped (time budget)")
            continue
        try:
            family, px, batch, syncs = syncs_per_step(config, root, scratch / config, args)
            flops = flops_per_step(config, root, args)
        except Exception as err:  # noqa: BLE001 - a row that fails is reported, the run goes on
            print(f"{config:<16} | {failed(err)}", flush=True)
            continue
        for precision, mode, overrides in variants(config):
            lead = f"{config:<16} | {family:<9} | {px:>3} | {batch:>5} | {precision:<10} | "
            lead += f"{mode:<12} | "
            warmup = args.compile_warmup if "compile" in mode else args.warmup
            opts = options(
                args, set=[*shrunk(args, config), *overrides], warmup=warmup, steps=args.steps
            )
            if overrides:  # a fresh compile: earlier configs' graphs neither serve nor count
                torch.compiler.reset()  # against dynamo's recompile limit
            try:
                clock = lightning_clock(config, root, precision, opts)
            except Exception as err:  # noqa: BLE001
                print(lead + failed(err), flush=True)
                continue
            print(
                lead + f"{clock.rate * batch:>9.1f} | {clock.warm:>9.1f} | {flops / 1e9:>10.3f} | "
                f"{flops * clock.rate / peak:>11.1%} | {syncs:>10.2f}",
                flush=True,
            )


def quality(args, config: str) -> None:
    """`benchmarks/quality.py` for 3 minutes (smoke: a few steps); its summary and table."""
    path = ROOT / "configs" / f"{config}.yaml"
    device = [f"trainer.accelerator={args.accelerator}", "trainer.devices=1"]
    if args.smoke:
        budget = ["--steps", "4", "--num", "8", "--size", "32", "--plain-steps", "2"]
        sets = ["data.image_size=32", "data.batch_size=4", *device, *shrunk(args, config)]
        if "monet.models.Diffusion" in path.read_text():  # a DDIM of 2 steps, not 250
            sets.append("model.init_args.sampling_steps=2")
    else:
        budget, sets = ["--minutes", str(args.minutes)], device
    cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(path), *budget]
    out = subprocess.run(
        [*cmd, "--set", *sets], cwd=ROOT, capture_output=True, text=True, check=False
    )
    lines = out.stdout.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(f"{config}:")), None)
    if out.returncode != 0 or first is None:
        print(f"{config}: quality.py failed ({out.returncode}):\n{out.stderr[-2000:]}")
        return
    print("\n".join(lines[first:]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a CPU at tiny sizes, a few steps")
    parser.add_argument("--configs", nargs="+", default=None, help="default: all (smoke: 3)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (GPU 20, smoke 2)")
    parser.add_argument("--warmup", type=int, default=None, help="eager (GPU 5, smoke 1)")
    parser.add_argument("--compile-warmup", type=int, default=None, help="(GPU 10, smoke 2)")
    parser.add_argument("--budget", type=float, default=None, help="throughput s (GPU 200)")
    parser.add_argument("--minutes", type=int, default=3, help="of each quality run")
    parser.add_argument("--quality", nargs="*", default=list(QUALITY))
    args = parser.parse_args()
    smoke = args.smoke
    args.accelerator = "cpu" if smoke else "gpu"
    args.configs = args.configs or list(CONFIGS[:3] if smoke else CONFIGS)  # smoke: a family each
    args.steps = args.steps or (2 if smoke else 20)
    args.warmup = args.warmup or (1 if smoke else 5)
    args.compile_warmup = args.compile_warmup or (2 if smoke else 10)
    args.budget = args.budget or (600.0 if smoke else 200.0)
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("bench-gpu: no CUDA GPU here; `make bench-gpu SMOKE=1` runs on a CPU")
    start = time.perf_counter()
    quiet()
    os.environ.setdefault("WANDB_MODE", "offline")
    keep_freed_memory()  # as `python -m monet` runs
    # fp32 as the shipped configs run it: matmuls in full fp32 (torch's default), convolutions
    # in TF32 (cudnn's default); set explicitly so that nothing earlier changes them
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = True
    if smoke:
        # inductor's C++ builds take minutes on a small CPU: smoke runs trace the networks
        # with dynamo (graph breaks, guards, recompiles) and run the graphs eagerly
        torch.nn.Module.compile = functools.partialmethod(torch.nn.Module.compile, backend="eager")
    device = device_of(args)
    n, reps = (256, 3) if smoke else (8192, 10)
    peaks = {
        dtype: matmul_peak(dtype, device, n=n, reps=reps)
        for dtype in (torch.bfloat16, torch.float32)
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    tmp = tempfile.TemporaryDirectory()
    scratch = Path(tmp.name)
    root = synthetic_folder(scratch / "data")
    print(
        f"bench-gpu{' (smoke: 32 px, batch 4, shrunk networks)' if smoke else ''}: {name}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n"
        f"measured matmul peak ({n}^3, best of {reps}): bf16 {peaks[torch.bfloat16] / 1e12:.3g} "
        f"TFLOP/s, fp32 {peaks[torch.float32] / 1e12:.3g} TFLOP/s; fp32 matmuls in full fp32 "
        "(float32_matmul_precision highest), fp32 convolutions in TF32 (cudnn.allow_tf32)\n"
        f"images/s: Lightning fit, {args.steps} steps after {args.warmup} (compiled: after "
        f"{args.compile_warmup}; GANs whole n_critic cycles); warm-up s not in images/s; "
        "CycleGAN: photo-painting pairs/s; synthetic data\n",
        flush=True,
    )
    throughput(args, root, scratch, peaks[torch.bfloat16], start)
    print(f"\nthroughput part: {time.perf_counter() - start:.0f} s", flush=True)
    if args.quality:
        data = os.environ.get("MONET_DATA")
        steps = "a few steps" if smoke else f"{args.minutes} minutes"
        print(
            f"\nquality after {steps} (benchmarks/quality.py) on "
            + (data if data else "synthetic paintings: MONET_DATA is not set, so SWD means nothing")
        )
        for config in args.quality:
            print()
            quality(args, config)
    print(f"\nbench-gpu: {time.perf_counter() - start:.0f} s in all")
    tmp.cleanup()


if __name__ == "__main__":
    main()
