"""Sample quality at a fixed budget: train a config on the real paintings, export images with
the sampling network (EMA) and the raw one, and compare them with the paintings.

    MONET_DATA=../shared/data python benchmarks/quality.py configs/wgan_gp.yaml --minutes 20
    MONET_DATA=../shared/data python benchmarks/quality.py configs/wgan_gp.yaml --steps 200

The run is the shipped config as `python -m monet fit` runs it (validation, grids, SWD metrics,
checkpoints; Inception metrics off, W&B offline), stopped by `--trainer.max_time` or
`--trainer.max_steps`. Then `--num` images (seeds 0..num-1, as `predict` draws them) are
compared at `--size` px with the paintings by the sliced Wasserstein distance over 7x7
Laplacian-pyramid patches (x1e3, `monet.metrics.swd`; lower is closer), both sets scaled by
the paintings' per-channel statistics, so wrong colours count. The paintings are split into two
seeded halves of `--num` images: the second half is the reference of every row, the first half
gives the floor (real vs real), and `--num` Kaggle photos the baseline (not paintings).
Near-copies are generated images within the memorization check's threshold of a training
painting (`monet.metrics.memorization`). ""Contrast" is the images' per-channel pixel std over the
paintings' (haze shows well below 1). "4-px grid" is the share of the images' detail on a
4-px grid (`monet.metrics.spectrum`) as a multiple of the paintings' share: the dot pattern of
transposed convolutions shows as 10x and more. The table also gives the steps done, the share
of wall time spent in training steps (the rest: validation, metrics, grids, checkpoints) and
the optimizer steps a minute of the run next to a plain PyTorch loop of the same step
(`benchmarks/train.py`), measured in the same process. With `--out DIR`, DIR/rowN.png shows
the first 64 images of each row but the floor (DIR/rowN.pt: all of them).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from common import data_root, quiet

from monet.__main__ import cli_main
from monet.data import MonetDataModule
from monet.images import resize, to_unit
from monet.metrics import sliced_wasserstein_distance
from monet.metrics.memorization import memorization_report
from monet.metrics.spectrum import grid_share
from monet.models import GAN, Diffusion
from monet.models.ema import EMA, AveragedNetwork, has_batch_stats
from monet.runtime.malloc import keep_freed_memory


class StepTimer(L.Callback):
    """Wall time inside training steps (batch start to batch end), of the whole fit, and after
    the last step (what the run spends once its budget is out: the final grid, checkpoint).

    With `cpu_minutes`, the fit stops once this process has used that many minutes of its
    threads' CPU time (`time.process_time()` / threads): the same budget as wall minutes on a
    quiet machine, and still the same when other work shares the CPU (then it runs longer).
    """

    def __init__(self, cpu_minutes: float | None = None) -> None:
        self.in_steps, self.fit, self.after_last, self._t0, self._fit0 = 0.0, 0.0, 0.0, 0.0, 0.0
        self.cpu_minutes, self._cpu0, self._last = cpu_minutes, 0.0, 0.0

    def cpu_used(self) -> float:
        return (time.process_time() - self._cpu0) / torch.get_num_threads() / 60

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit0, self._cpu0 = time.perf_counter(), time.process_time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last = time.perf_counter()
        self.in_steps += self._last - self._t0
        if self.cpu_minutes and self.cpu_used() >= self.cpu_minutes:
            trainer.should_stop = True  # one process: no rank can disagree

    def on_fit_end(self, trainer, pl_module) -> None:
        now = time.perf_counter()
        self.fit, self.after_last = now - self._fit0, now - self._last


def train(args, root: Path, out: Path) -> tuple[L.LightningModule, StepTimer, L.Trainer]:
    if args.steps:
        stop = [f"--trainer.max_steps={args.steps}", "--trainer.max_time=null"]
    elif args.cpu_minutes:
        stop = ["--trainer.max_steps=-1", "--trainer.max_time=null"]
    else:
        stop = [f"--trainer.max_time=00:00:{args.minutes:02d}:00", "--trainer.max_steps=-1"]
    cli = cli_main(
        [
            "--config",
            args.config,
            *(f"--{override}" for override in args.set),  # first: a new logger class keeps
            f"--data.root={root}",  # the folders set below
            f"--trainer.default_root_dir={out}",
            f"--trainer.logger.init_args.save_dir={out}",
            "--trainer.max_epochs=-1",
            "--metrics.inception=false",  # weight-free: SWD and near-copies only
            *stop,
        ],
        run=False,
    )
    trainer = cli.trainer
    timer = StepTimer(args.cpu_minutes)
    trainer.callbacks.append(timer)
    trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.model, timer, trainer


@contextmanager
def sampling_with(model: L.LightningModule, ema: AveragedNetwork | None):
    """The module samples with `ema` in place of its own EMA copy (None: the live network)."""
    kept = model.ema
    model.ema = ema
    try:
        yield
    finally:
        model.ema = kept


@contextmanager
def ema_length(model: L.LightningModule, half_life: float):
    """The module samples with its EMA copy of `half_life` images (one of the kept lengths)."""
    settings = model.ema.settings
    model.ema.settings = dataclasses.replace(settings, use=half_life)
    try:
        yield
    finally:
        model.ema.settings = settings


def with_standing_stats(model: GAN, net: torch.nn.Module) -> AveragedNetwork:
    """A copy of `net` that samples with standing BatchNorm statistics (GAN.generate computes
    them for its weights)."""
    settings = model.ema.settings if model.ema is not None else EMA()
    return AveragedNetwork(net, dataclasses.replace(settings, buffers="standing"), standing=True)


def generate(model: L.LightningModule, inputs: torch.Tensor, size: int, batch: int = 50):
    """What `predict` makes of `inputs`: per-image seeds, or photos (uint8) to translate."""
    with torch.no_grad():
        images = [
            model.predict_step(to_unit(x) if x.dtype == torch.uint8 else x, 0).float().cpu()
            for x in inputs.split(batch)
        ]
    return at_size(torch.cat(images), size)


def at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (uint8, or floats in [-1, 1]) as floats in [-1, 1] at `size` px, resized as every
    exported image is (monet.images.resize)."""
    return resize(to_unit(images) if images.dtype == torch.uint8 else images, size).clamp(-1, 1)


def paintings_and_photos(root: Path, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All paintings (uint8), two seeded halves of `num` at `size` px, and `num` photos (or
    None where the data has none)."""
    dm = MonetDataModule(str(root), image_size=args.size)
    dm.setup("fit")
    real = at_size(dm.real, args.size)
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    half = min(args.num, len(real) // 2)
    photos = None
    try:
        pm = MonetDataModule(str(root), domain="photo", image_size=args.size)
        pm.setup("fit")
        photos = at_size(pm.real[pick_photos(pm.real, args.num)], args.size)
    except Exception as err:  # noqa: BLE001 - no photos here: the row is left out
        print(f"no photo baseline: {err}")
    return dm.real, (real[order[:half]], real[order[half : 2 * half]]), photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--minutes", type=int, default=20, help="wall-clock budget of the fit")
    parser.add_argument("--steps", type=int, default=0, help="a step budget instead (max_steps)")
    parser.add_argument(
        "--cpu-minutes",
        type=float,
        default=0,
        help="a budget of this process's CPU time / threads instead: as --minutes on a quiet "
        "machine, unchanged by other work sharing the CPU",
    )
    parser.add_argument("--num", type=int, default=150, help="images compared per row")
    parser.add_argument("--size", type=int, default=64, help="px at which SWD compares")
    parser.add_argument("--plain-steps", type=int, default=20, help="0 skips the plain loop")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    args = parser.parse_args()
    quiet()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    keep_freed_memory()
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    out = Path(args.out or tmp.name) / "run"
    training, (half_a, half_b), photos = paintings_and_photos(root, args)

    model, timer, trainer = train(args, root, out)
    model.eval()
    gan = isinstance(model, GAN)
    steps = (
        f"{model.generator_steps} G / {model.critic_steps} D" if gan else f"{trainer.global_step}"
    )
    inputs = torch.arange(args.num)  # per-image seeds, as `predict` draws them
    made = "generated"
    if model.translates:  # photos: the baseline row shows the very same ones
        steps = f"{model.generator_steps} G / {model.generator_steps} D"
        inputs = trainer.datamodule.photos()[pick_photos(trainer.datamodule.photos(), args.num)]
        photos, made = at_size(inputs, args.size), "translated photos"
    rows = [("two halves of the real paintings (the floor)", half_a, "")]
    if photos is not None:
        rows.append((f"{len(photos)} Kaggle photos, not paintings", photos, ""))
    sampling = generate(model, inputs, args.size)
    with sampling_with(model, None):
        raw = generate(model, inputs, args.size)
    if model.ema is None:
        rows.append((f"{made} (no EMA)", raw, steps))
    else:
        buffers = model.ema.settings.buffers
        rows.append((f"{made}, EMA network (buffers: {buffers})", sampling, steps))
        for half_life, net in model.ema.copies():  # the EMA-length curve: every kept length
            if net is not model.ema.selected:
                with ema_length(model, half_life):
                    images = generate(model, inputs, args.size)
                rows.append((f"{made}, EMA half-life {half_life:g} images", images, steps))
        if gan and buffers != "standing" and has_batch_stats(model.ema.net):
            with sampling_with(model, with_standing_stats(model, model.ema.net)):
                standing = generate(model, inputs, args.size)
            rows.append(("generated, EMA network, standing BatchNorm statistics", standing, steps))
        rows.append((f"{made}, raw network", raw, steps))
    if gan and has_batch_stats(model.generator):
        with sampling_with(model, with_standing_stats(model, model.generator)):
            standing = generate(model, inputs, args.size)
        rows.append(("generated, raw network, standing BatchNorm statistics", standing, steps))

    if args.out:  # the images themselves, for a look: a grid per generated row
        from torchvision.utils import save_image

        for i, (_, images, _) in enumerate(rows):
            if i:  # all but the floor: the photos too, for a sheet of photos beside translations
                save_image((images[:64] + 1) / 2, out.parent / f"row{i}.png", nrow=8)
                torch.save(images, out.parent / f"row{i}.pt")
    plain = ""
    if args.plain_steps:
        plain = f"; a plain loop of the same step: {plain_rate(args, root, trainer):.0f}/min"
    minutes = timer.fit / 60
    print(
        f"\n{Path(args.config).stem}: {minutes:.1f} min on "
        f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'} "
        f"({torch.get_num_threads()} threads); {trainer.global_step} optimizer steps "
        f"({trainer.global_step / minutes:.0f}/min{plain}); "
        f"{timer.in_steps / timer.fit:.0%} of wall time in training steps; "
        f"{timer.after_last:.0f} s after the last step ({timer.after_last / timer.fit:.1%}); "
        f"samples: {sampler_of(model)}"
    )
    header = (
        f"{'images':<58} | {'SWD':>6} | {'x floor':>7} | {'near-copies':>11} | "
        f"{'contrast':>8} | {'4-px grid':>9} | steps"
    )
    print(header + "\n" + "-" * len(header))
    floor, grid_floor, paintings_std = None, None, half_b.std(dim=(0, 2, 3))
    for name, images, steps_done in rows:
        swd = sliced_wasserstein_distance(half_b, images, normalise="reference").mean
        grid = grid_share(images)
        floor, grid_floor = floor or swd, grid_floor or grid
        copies = "-" if steps_done == "" else f"{share(images, training):.1%}"
        print(
            f"{name:<58} | {swd:>6.1f} | {swd / floor:>7.2f} | {copies:>11} | "
            f"{contrast(images, paintings_std):>8.2f} | {grid / grid_floor:>8.1f}x | {steps_done}",
            flush=True,
        )
    tmp.cleanup()


def sampler_of(model: L.LightningModule) -> str:
    """How `predict` samples: a diffusion model's sampler and its network evaluations."""
    if not isinstance(model, Diffusion):
        return "one generator pass"
    if model.sampler == "ddpm":
        return f"DDPM, {model.process.timesteps} steps"
    steps = model.sampling_steps or min(50, model.process.timesteps)
    evaluations = 2 * steps - 1 if model.sampler == "heun" else steps
    return f"{model.sampler}, {steps} steps ({evaluations} network evaluations)"


def pick_photos(photos: torch.Tensor, num: int) -> torch.Tensor:
    return torch.randperm(len(photos), generator=torch.Generator().manual_seed(1))[:num]


def contrast(images: torch.Tensor, paintings_std: torch.Tensor) -> float:
    """The images' per-channel pixel std over the paintings', averaged over the channels."""
    return float((images.std(dim=(0, 2, 3)) / paintings_std).mean())


def share(images: torch.Tensor, training: torch.Tensor) -> float:
    return memorization_report(images, training).near_copy_share


def plain_rate(args, root: Path, trainer: L.Trainer) -> float:
    """Optimizer steps a minute of `benchmarks/train.py`'s hand-written loop, same config."""
    from train import plain_rate as rate

    model, dm = trainer.lightning_module, trainer.datamodule
    opts = argparse.Namespace(
        image_size=dm.image_size,
        batch_size=dm.batch_size,
        set=args.set,
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        warmup=2,
        steps=args.plain_steps,
    )
    per_second, _ = rate(Path(args.config).stem, root, trainer.precision, opts)
    # optimizer steps a batch: a GAN's D step and every n_critic-th batch a G step; translators 2
    cycle = 1 + 1 / model.n_critic if isinstance(model, GAN) else 1 + model.translates
    return per_second * 60 * cycle


if __name__ == "__main__":
    main()
