"""Exact resume: a run stopped part-way and continued with --ckpt_path last ends with the same
weights, optimizer state, EMA and counters as one that ran straight through."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from support import ROOT, shrink_nets, small

from monet.__main__ import cli_main
from monet.errors import ConfigError


def fit(config, data, out, epochs: int, *extra: str):
    args = small(
        config,
        data,
        out,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.max_steps",
        "-1",
        *shrink_nets(config),
        *extra,
    )
    return cli_main(["fit", *args])


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            assert_same_state(a[key], b[key])
        elif isinstance(a[key], list):
            assert len(a[key]) == len(b[key]), key
            for x, y in zip(a[key], b[key]):
                assert_same_state(x, y) if isinstance(x, dict) else None
        else:  # plain values: the EMA's clock, optimizer steps
            assert a[key] == b[key], key


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,extra",
    [
        (
            "wgan_gp_diffaug",
            ["--data.augment.rotation.p", "0.5"],
        ),  # noise, DiffAugment, EMA, aug RNG
        ("ddpm_lib", []),  # timesteps, noise, EMA, accumulation, bf16
        (  # both domains' streams, image pools, LR schedule, DiffAugment, EMA
            "cyclegan",
            [
                *("--data.init_args.epoch_size", "8", "--metrics.inception", "false"),
                *("--model.init_args.diffaugment", "color,translation"),
                *("--model.init_args.ema.half_life", "100"),
            ],
        ),
        (  # CUT: the sampled patch locations, the head, LR schedule, DiffAugment, EMA
            "cut_128",
            [
                *("--data.init_args.epoch_size", "8", "--metrics.inception", "false"),
                *("--model.init_args.diffaugment", "color,translation"),
            ],
        ),
    ],
)
def test_resumed_run_matches_an_uninterrupted_one(name, extra, kaggle_dir, tmp_path):
    config = ROOT / "configs" / f"{name}.yaml"
    straight = fit(config, kaggle_dir, tmp_path / "straight", 2, *extra)
    fit(config, kaggle_dir, tmp_path / "stopped", 1, *extra)  # a job killed after epoch 1
    resumed = fit(config, kaggle_dir, tmp_path / "stopped", 2, *extra, "--ckpt_path", "last")
    assert resumed.trainer.global_step == straight.trainer.global_step > 0
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    for a, b in zip(straight.trainer.optimizers, resumed.trainer.optimizers):
        assert_same_state(a.state_dict()["state"], b.state_dict()["state"])
    counters = [n for n in straight.model.counters]
    assert [getattr(straight.model, n) for n in counters] == [
        getattr(resumed.model, n) for n in counters
    ]


def as_before_the_one_ema(path) -> int:
    """Rewrite a GAN's checkpoint as runs wrote it before AveragedNetwork: the EMA copy under
    `generator_ema.*` and its clock in the `ema_updates` counter. Returns that clock."""
    ckpt = torch.load(path, weights_only=False)
    state = ckpt["state_dict"]
    steps = state.pop("ema._extra_state")["steps"]
    for key in [k for k in state if k.startswith("ema.net.")]:
        state["generator_ema." + key.removeprefix("ema.net.")] = state.pop(key)
    assert ckpt["counters"].pop("generator_steps") == steps
    ckpt["counters"]["ema_updates"] = steps
    torch.save(ckpt, path)
    return steps


@pytest.mark.slow
def test_a_checkpoint_from_before_the_one_ema_resumes_exactly(kaggle_dir, tmp_path):
    config = ROOT / "configs" / "fastgan.yaml"  # EMA with standing BatchNorm statistics
    straight = fit(config, kaggle_dir, tmp_path / "straight", 2)
    fit(config, kaggle_dir, tmp_path / "old", 1)
    (path,) = (tmp_path / "old").rglob("last.ckpt")
    steps = as_before_the_one_ema(path)
    resumed = fit(config, kaggle_dir, tmp_path / "old", 2, "--ckpt_path", "last")
    assert 0 < steps < resumed.model.ema.steps == straight.model.ema.steps
    assert_same_state(straight.model.state_dict(), resumed.model.state_dict())  # clock too
    assert resumed.model.generator_steps == straight.model.generator_steps


def test_ckpt_path_last_with_nothing_to_resume_says_so(kaggle_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no last.ckpt under .*nothing to resume"):
        fit(ROOT / "configs/wgan_gp.yaml", kaggle_dir, tmp_path, 1, "--ckpt_path", "last")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wgan_gp", "ddpm_lib"])
def test_a_run_killed_with_sigkill_continues_from_its_last_checkpoint(name, kaggle_dir, tmp_path):
    """`kill -9` after the first checkpoint; `--ckpt_path last` continues from its step."""
    config = ROOT / "configs" / f"{name}.yaml"
    base = [sys.executable, "-m", "monet", "fit", *small(config, kaggle_dir, tmp_path)]
    base += [*shrink_nets(config), "--trainer.max_steps", "-1", "--metrics.inception", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(
        [*base, "--trainer.max_epochs", "100000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.rglob("last.ckpt")):
            assert run.poll() is None, run.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no last.ckpt after 300 s"
            time.sleep(0.2)
        time.sleep(2)  # a few more steps, and maybe a newer last.ckpt being written
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    (last,) = tmp_path.rglob("last.ckpt")  # whole: written to a temporary file, then renamed
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert killed_at > 0
    resumed = subprocess.run(
        [*base, "--trainer.max_steps", str(killed_at + 2), "--ckpt_path", "last"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last}" in resumed.stderr
    assert "Restored all states from the checkpoint" in resumed.stderr + resumed.stdout
    (final,) = [p for p in tmp_path.rglob("last.ckpt") if p != last] or [last]
    # a GAN batch may end on a critic and a generator step: max_steps is reached within one
    assert killed_at + 2 <= torch.load(final, weights_only=False)["global_step"] <= killed_at + 3


@pytest.mark.slow
def test_checkpoints_that_cannot_resume_this_config_fail_before_the_first_step(
    kaggle_dir, tmp_path
):
    wgan = ROOT / "configs" / "wgan_gp.yaml"
    fit(wgan, kaggle_dir, tmp_path / "a", 1)
    (last,) = (tmp_path / "a").rglob("last.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    cases = [
        (wgan, truncated, [], "not a readable Lightning checkpoint"),
        (wgan, text, [], "not a readable Lightning checkpoint"),
        (wgan, tmp_path / "nowhere.ckpt", [], "no such file"),
        # another network, another image size: what the checkpoint holds, what the config builds
        (
            ROOT / "configs" / "fastgan.yaml",
            last,
            [],
            r"holds a GAN \(WGANGenerator, 32 px\); "
            r".*fastgan.yaml builds a GAN \(FastGANGenerator, 32 px\)",
        ),
        (wgan, last, ["--data.image_size", "64"], r"WGANGenerator, 32 px\); .*WGANGenerator, 64"),
    ]
    for config, path, extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            fit(config, kaggle_dir, tmp_path / "b", 2, "--ckpt_path", str(path), *extra)
    assert not list((tmp_path / "b").rglob("*.ckpt"))  # nothing trained, nothing written


@pytest.mark.slow
def test_ckpt_path_last_takes_a_newer_slurm_requeue_checkpoint(kaggle_dir, tmp_path, capsys):
    config = ROOT / "configs" / "wgan_gp.yaml"
    fit(config, kaggle_dir, tmp_path, 1)
    (last,) = tmp_path.rglob("last.ckpt")
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # where Lightning saves on SIGUSR1 (default_root_dir)
    hpc.write_bytes(last.read_bytes())
    os.utime(hpc, (last.stat().st_mtime + 5,) * 2)
    cli = fit(config, kaggle_dir, tmp_path, 2, "--ckpt_path", "last")
    assert f"resuming from {hpc}" in capsys.readouterr().err
    assert cli.trainer.current_epoch == 2
