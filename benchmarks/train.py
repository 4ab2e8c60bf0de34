"""Train steps/s of every family under Lightning next to a plain PyTorch loop, in fp32 and
bf16-mixed, and the share of this machine's measured matmul peak that each reaches.

    MONET_DATA=../shared/data python benchmarks/train.py [--image-size 64] [--batch-size 16]

Each config's model is built twice from its YAML with the same seed: once for a Lightning
`Trainer.fit` (logging, the NonFiniteGuard callback and EMA as in a real run; no checkpoints,
validation or progress bar), once for a hand-written loop doing the same work per batch (the
same augmented batches, losses, optimizers, requires_grad toggling and EMA). A step is one
training batch; for a GAN, every `n_critic`-th step also updates the generator. FLOPs per
step are counted with `torch.utils.flop_counter` over one cycle of the plain loop; the peak is
the best `torch.mm` rate of this machine in the run's precision, measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from common import bench_trainer, data_root, quiet
from torch.utils.flop_counter import flop_registry

from monet.__main__ import cli_main
from monet.callbacks import NonFiniteGuard
from monet.data import UnpairedDataModule
from monet.data.augment import augment_batch_
from monet.images import to_unit
from monet.models import CUT, GAN, CycleGAN
from monet.models.losses import (
    critic_loss,
    cycle_loss,
    generator_loss,
    gradient_penalty,
    identity_loss,
    r1_penalty,
)
from monet.nets.common import cpu_has_bf16
from monet.nets.cut import layer_features
from monet.runtime.compat import TorchDispatchMode
from monet.runtime.malloc import keep_freed_memory
from monet.runtime.seeding import stream_seed

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("wgan_gp", "dcgan", "ddpm_unet_linear", "ddpm_attn_linear", "ddpm_lib")
PRECISIONS = ("32-true", "bf16-mixed")


def device_of(args) -> torch.device:
    return torch.device("cuda" if args.accelerator == "gpu" else args.accelerator)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of the best of `reps` (n x n) @ (n x n) products."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


aten = torch.ops.aten
FORMULAS = {
    **flop_registry,
    # the CPU's fused attention, which torch's table leaves out (it has the GPU kernels')
    aten._scaled_dot_product_flash_attention_for_cpu: flop_registry[
        aten._scaled_dot_product_flash_attention
    ],
    aten._scaled_dot_product_flash_attention_for_cpu_backward: flop_registry[
        aten._scaled_dot_product_flash_attention_backward
    ],
}


class FlopCount(TorchDispatchMode):
    """Sums `torch.utils.flop_counter`'s formulas over every op run, backward included.

    Not FlopCounterMode itself: its per-module tracker hooks autograd in a way that
    `torch.autograd.grad` on a leaf (the gradient penalty's interpolates) refuses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FORMULAS.get(func.overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def build(config: str, root: Path, args) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The config's model and data module, seeded by the config's `seed_everything`; at
    `args.image_size` and `args.batch_size`, or the config's own where those are None."""
    cli = cli_main(
        [
            "--config",
            str(ROOT / "configs" / f"{config}.yaml"),
            f"--data.root={root}",
            *([f"--data.image_size={args.image_size}"] if args.image_size else []),
            *([f"--data.batch_size={args.batch_size}"] if args.batch_size else []),
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
            *(f"--{override}" for override in args.set),
        ],
        run=False,
    )
    return cli.model, cli.datamodule


def window(model: L.LightningModule, args) -> tuple[int, int, int]:
    """(cycle, warm-up steps, timed steps): a GAN's generator steps every n_critic batches, so
    both loops time whole cycles that start at a cycle boundary."""
    cycle = model.n_critic if isinstance(model, GAN) else 1
    whole = lambda n: -(-n // cycle) * cycle  # noqa: E731  (round up to whole cycles)
    return cycle, whole(max(1, args.warmup)), whole(args.steps)


class Clock(L.Callback):
    """Times `steps` whole batches after `warmup` of them, then stops the run; `warm` is the
    seconds from the start of training to the end of the warm-up (a compile included)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.seen, self.start, self.rate = warmup, steps, 0, 0.0, 0.0
        self.began, self.warm = 0.0, 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        if self.seen not in (self.warmup, self.warmup + self.steps):
            return  # a sync each batch would keep the host from queueing ahead
        sync(pl_module.device)
        if self.seen == self.warmup:
            self.start = time.perf_counter()
            self.warm = self.start - self.began
        else:
            self.rate = self.steps / (time.perf_counter() - self.start)
            trainer.should_stop = True


def lightning_rate(config: str, root: Path, precision: str, args) -> float:
    return lightning_clock(config, root, precision, args).rate


def lightning_clock(config: str, root: Path, precision: str, args) -> Clock:
    """A Lightning fit of the config, timed by the Clock it returns."""
    model, dm = build(config, root, args)
    _, warmup, steps = window(model, args)
    clock = Clock(warmup, steps)
    # NonFiniteGuard as every shipped config has it
    trainer = bench_trainer(args.accelerator, [clock, NonFiniteGuard()], precision=precision)
    trainer.fit(model, dm)
    return clock


def gan_step(m: GAN, optimizers, real: torch.Tensor, i: int, autocast) -> None:
    """GAN.training_step by hand: a critic step, and every n_critic-th batch a generator step."""
    opt_g, opt_c = optimizers
    with autocast:
        fake = m.generator(m.sample_noise(len(real)).to(real.device))
    m.generator.requires_grad_(False)  # what Lightning's toggle_optimizer does
    with autocast:
        real_aug, fake_aug = m.augment(real), m.augment(fake.detach())
        loss_c = critic_loss(m.loss, m.critic(real_aug), m.critic(fake_aug))
        if m.gp_weight > 0:
            loss_c = loss_c + m.gp_weight * gradient_penalty(m.critic, real_aug, fake_aug)
        if m.r1_gamma > 0:
            loss_c = loss_c + 0.5 * m.r1_gamma * r1_penalty(m.critic, real_aug)
    opt_c.zero_grad(set_to_none=True)
    loss_c.backward()
    opt_c.step()
    m.generator.requires_grad_(True)
    if (i + 1) % m.n_critic == 0:
        m.critic.requires_grad_(False)
        with autocast:
            loss_g = generator_loss(m.loss, m.critic(m.augment(fake)))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        m.generator_stepped(len(real))
        m.critic.requires_grad_(True)


def diffusion_step(m, optimizer, x0: torch.Tensor, i: int, autocast) -> None:
    """Diffusion's automatic step by hand: loss, backward, optimizer, EMA."""
    with autocast:  # the forward only, as Lightning (and torch's AMP docs) do
        loss = m.process.loss(m.denoiser, x0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    m.update_ema(len(x0))


def cyclegan_step(m: CycleGAN, optimizers, batch: dict, i: int, autocast) -> None:
    """CycleGAN.training_step by hand: both generators, then both critics on pooled fakes."""
    opt_g, opt_c = optimizers
    monet, photo = batch["monet"], batch["photo"]
    G, F, D, D_photo = m.generator, m.inverse, m.critic, m.photo_critic
    D.requires_grad_(False), D_photo.requires_grad_(False)
    with autocast:
        fake_monet, fake_photo = G(photo), F(monet)
        loss_g = generator_loss(m.loss, D(m.augment(fake_monet)))
        loss_g = loss_g + generator_loss(m.loss, D_photo(fake_photo))
        cycle = cycle_loss(photo, F(fake_monet)) + cycle_loss(monet, G(fake_photo))
        loss_g = loss_g + m.cycle_weight * cycle
        if m.identity_weight > 0:
            identity = identity_loss(monet, G(monet)) + identity_loss(photo, F(photo))
            loss_g = loss_g + m.identity_weight * m.cycle_weight * identity
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    m.generator_stepped(len(photo))
    D.requires_grad_(True), D_photo.requires_grad_(True)
    G.requires_grad_(False), F.requires_grad_(False)
    gen = torch.Generator().manual_seed(stream_seed(i))
    old_monet = m.pools["monet"].query(fake_monet.detach(), gen)
    old_photo = m.pools["photo"].query(fake_photo.detach(), gen)
    with autocast:
        loss_c = critic_loss(m.loss, D(m.augment(monet)), D(m.augment(old_monet)))
        loss_c = loss_c + critic_loss(m.loss, D_photo(photo), D_photo(old_photo))
    opt_c.zero_grad(set_to_none=True)
    loss_c.backward()
    opt_c.step()
    G.requires_grad_(True), F.requires_grad_(True)


def cut_step(m: CUT, optimizers, batch: dict, i: int, autocast) -> None:
    """CUT.training_step by hand: one generator pass, the critic, then generator + head."""
    opt_g, opt_c = optimizers
    monet, photo = batch["monet"], batch["photo"]
    G, D = m.generator, m.critic
    gen = torch.Generator().manual_seed(stream_seed(i))
    with autocast:
        inputs = torch.cat([photo, monet]) if m.nce_identity else photo
        sources, outputs = layer_features(G.net, inputs, m.nce_layers)
        fake = outputs[: len(photo)]
        loss_c = critic_loss(m.loss, D(m.augment(monet)), D(m.augment(fake.detach())))
    opt_c.zero_grad(set_to_none=True)
    loss_c.backward()
    opt_c.step()
    D.requires_grad_(False)
    with autocast:
        loss_g = generator_loss(m.loss, D(m.augment(fake)))
        loss_g = loss_g + m.nce_weight * m.patch_nce(sources, outputs, gen)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    m.generator_stepped(len(photo))
    D.requires_grad_(True)


def plain_rate(config: str, root: Path, precision: str, args) -> tuple[float, float]:
    """(steps/s, FLOPs per step) of a hand-written loop over the same batches."""
    model, dm = build(config, root, args)
    device = device_of(args)
    model.to(device).configure_model()
    dm.setup("fit")
    loader = dm.train_dataloader()
    step = {GAN: gan_step, CycleGAN: cyclegan_step, CUT: cut_step}.get(type(model), diffusion_step)
    optimizers = model.configure_optimizers()
    if isinstance(optimizers, dict):  # a scheduler stepped each optimizer step: not here
        raise SystemExit(f"{config}: a config with a per-step lr_scheduler is not supported")
    if isinstance(optimizers, tuple):  # (optimizers, schedulers stepped once an epoch)
        optimizers = optimizers[0]
    cycle, warmup, steps = window(model, args)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else nullcontext()
    )
    counter = FlopCount()
    done, epoch, start = 0, 0, 0.0
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            gen = torch.Generator().manual_seed(done)
            if isinstance(dm, UnpairedDataModule):  # a batch of each domain
                x = dm.pairs(done, 0, len(batch), device)
            else:
                x = augment_batch_(to_unit(batch.to(device)), dm.augment, gen)
            with counter if done < cycle else nullcontext():
                step(model, optimizers, x, done, autocast)
            done += 1
            sync(device)
            if done == warmup:
                start = time.perf_counter()
            elif done == warmup + steps:
                rate = steps / (time.perf_counter() - start)
                return rate, counter.total / cycle
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        help="default: both, but only 32-true on a CPU without bfloat16 units",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="report the best of this many")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. model.init_args.ema_decay=null",
    )
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    quiet()
    keep_freed_memory()  # as `python -m monet` runs
    tmp = tempfile.TemporaryDirectory()
    root = data_root(Path(tmp.name))
    device = device_of(args)
    if args.precisions is None:
        args.precisions = list(PRECISIONS)
        if device.type == "cpu" and not cpu_has_bf16():
            args.precisions = ["32-true"]
            print(
                "bf16-mixed left out: this CPU has no bfloat16 units (emulated bf16 runs ~100x "
                "slower); --precisions bf16-mixed measures it anyway"
            )
    peaks = {
        p: matmul_peak(torch.float32 if p == "32-true" else torch.bfloat16, device)
        for p in args.precisions
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.image_size} px, batch {args.batch_size}; best of {args.rounds} rounds of "
        f"{args.steps} steps after {args.warmup} (GANs: whole n_critic cycles); data {root}"
    )
    print(
        "measured matmul peak: "
        + ", ".join(f"{p} {peak / 1e9:.0f} GFLOP/s" for p, peak in peaks.items())
        + "\n"
    )
    header = (
        f"{'config':<17} | {'precision':<10} | {'lightning':>9} | {'plain':>9} | "
        f"{'overhead':>8} | {'GFLOP/step':>10} | {'GFLOP/s':>8} | {'of peak':>7}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    for config in args.configs:
        for precision in args.precisions:
            lightning, plain, flops = 0.0, 0.0, 0.0
            for _ in range(args.rounds):  # alternate, so drifts in machine speed hit both
                lightning = max(lightning, lightning_rate(config, root, precision, args))
                rate, flops = plain_rate(config, root, precision, args)
                plain = max(plain, rate)
            achieved = flops * lightning
            print(
                f"{config:<17} | {precision:<10} | {lightning:>9.3f} | {plain:>9.3f} | "
                f"{1 - lightning / plain:>7.1%} | {flops / 1e9:>10.1f} | "
                f"{achieved / 1e9:>8.1f} | {achieved / peaks[precision]:>6.1%}",
                flush=True,
            )
    tmp.cleanup()


if __name__ == "__main__":
    main()
