"""The command line, driven in-process through cli_main, on data the tests write and on the real
Kaggle data when MONET_DATA is set: every config in every precision, the config it prints,
errors before the first step, and checkpoints of another model refused before anything is
built."""

from __future__ import annotations

import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from support import CONFIGS, ROOT, one_line_error, shrink_nets, small

from monet.__main__ import cli_main
from monet.errors import ConfigError
from monet.models import GAN
from monet.nets.common import cpu_has_bf16

# On a CPU Lightning runs 16-mixed as bf16-mixed (fp16 autocast needs a GPU): one config says it
PRECISIONS = [(c, p) for c in CONFIGS for p in ("32-true", "bf16-mixed")]
PRECISIONS.append((ROOT / "configs" / "fastgan.yaml", "16-mixed"))


@pytest.mark.parametrize(
    "config, precision", PRECISIONS, ids=[f"{c.stem}-{p}" for c, p in PRECISIONS]
)
def test_every_config_fast_dev_run_in_every_precision(config, precision, kaggle_dir, tmp_path):
    args = small(
        config,
        kaggle_dir,
        tmp_path,
        "--trainer.fast_dev_run",
        "1",
        "--trainer.precision",
        precision,
    )
    emulated = precision != "32-true" and not cpu_has_bf16()
    with pytest.warns(UserWarning, match="bfloat16 is emulated") if emulated else nullcontext():
        cli = cli_main(["fit", *args, *shrink_nets(config)])
    assert cli.trainer.state.finished and cli.trainer.global_step >= 1


@pytest.mark.parametrize("hardware", ["1", "0"], ids=["bf16-units", "emulated"])
def test_bf16_mixed_takes_both_hardware_paths(hardware, kaggle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MONET_BF16", hardware)  # the path a CPU with (or without) bf16 units takes
    config = ROOT / "configs" / "ddpm_lib.yaml"
    args = small(config, kaggle_dir, tmp_path, "--trainer.fast_dev_run", "1")
    with (
        pytest.warns(UserWarning, match="bfloat16 is emulated")
        if hardware == "0"
        else nullcontext()
    ):
        cli = cli_main(["fit", *args, "--trainer.precision", "bf16-mixed", *shrink_nets(config)])
    assert cli.trainer.state.finished


@pytest.mark.slow
@pytest.mark.parametrize("name,compile", [("wgan_gp", True), ("ddpm_lib", False)])
def test_channels_last_and_compile(name, compile, kaggle_dir, tmp_path):
    # compiling the LibUnet on a CPU takes minutes: it runs on the GAN's generator here
    config = ROOT / "configs" / f"{name}.yaml"
    args = small(
        config,
        kaggle_dir,
        tmp_path,
        "--trainer.fast_dev_run",
        "1",
        "--model.init_args.channels_last",
        "true",
        "--model.init_args.compile",
        str(compile).lower(),
    )
    cli = cli_main(["fit", *args, *shrink_nets(config)])
    net = cli.model.generator if name == "wgan_gp" else cli.model.denoiser
    conv = next(
        m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert (net._compiled_call_impl is not None) == compile  # nn.Module.compile(), in place
    assert not any("_orig_mod" in k for k in cli.model.state_dict())
    if compile:  # the critic differentiates twice (gradient penalty): it stays eager
        assert cli.model.critic._compiled_call_impl is None


def test_print_config_shows_everything(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(ROOT / "configs/wgan_gp.yaml"), "--print_config"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for key in (
        "class_path: monet.models.GAN",
        "n_critic: 5",
        "gp_weight: 10.0",
        "five_crop:",
        "image_size: 64",
        "lr: 0.0001",
    ):
        assert key in out


def test_image_size_follows_data_and_bad_sizes_fail_at_startup(kaggle_dir, tmp_path):
    args = small(ROOT / "configs/wgan_gp.yaml", kaggle_dir, tmp_path)
    cli = cli_main([*args, "--data.image_size", "128"], run=False)
    assert cli.model.generator.image_size == 128 and cli.model.critic.image_size == 128
    with pytest.raises(ConfigError, match=r"image_size=48: use one of 32, 64, 128, 256"):
        cli_main([*args, "--data.image_size", "48"], run=False)


@pytest.mark.slow
def test_command_line_errors_are_one_clear_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monet",
            "fit",
            "--config",
            str(ROOT / "configs/wgan_gp.yaml"),
            "--data.root",
            str(tmp_path / "missing"),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 2
    assert "monet: error: data root" in result.stderr and "does not exist" in result.stderr
    assert "kaggle competitions download" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "config, key, value, message",
    [
        ("wgan_gp", "optimizer.init_args.lr", "-1", "model.init_args.optimizer: Invalid learning"),
        ("fastgan", "critic_optimizer.init_args.betas", "[0.5,1.5]", "critic_optimizer: Invalid"),
        ("ddpm_lib", "optimizer.init_args.lr", "-1", "model.init_args.optimizer: Invalid learning"),
        ("wgan_gp", "gp_weight", "-1", r"gp_weight=-1.0 must be at least 0"),
        ("ddpm_attn_linear", "sampling_steps", "5000", r"sampling_steps=5000 must be between 1"),
        ("fastgan", "diffaugment", "colour", r"unknown \['colour'\]; use any of color"),
        ("cyclegan", "cycle_weight", "-1", r"cycle_weight=-1.0 must be at least 0"),
    ],
)
def test_out_of_range_values_fail_before_the_first_step(
    config, key, value, message, kaggle_dir, tmp_path
):
    path = ROOT / "configs" / f"{config}.yaml"
    args = [*small(path, kaggle_dir, tmp_path), *shrink_nets(path), "--metrics.inception", "false"]
    with pytest.raises(ConfigError, match=message):
        cli_main(["fit", *args, f"--model.init_args.{key}", value])
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_wgan_gp_on_the_real_data_leaves_checkpoint_and_grid(shared_data, tmp_path):
    config = ROOT / "configs/wgan_gp.yaml"
    args = small(config, shared_data, tmp_path, "--trainer.max_steps", "12")
    cli = cli_main(["fit", *args, *shrink_nets(config)])
    run_dir = Path(cli.trainer.log_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "samples").glob("*.png"))
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 12 and ckpt["counters"]["critic_steps"] == 10
    model = GAN.load_from_checkpoint(
        run_dir / "checkpoints" / "last.ckpt",
        generator=cli.model.generator,
        critic=cli.model.critic,
    )
    assert model.n_critic == 5


def fake_checkpoint(path: Path, family: str, network: str, size: int) -> Path:
    """What the checks read before a model is built: the family, network and image size."""
    hparams = {"_class_path": f"monet.models.{family}"}
    info = {"family": family, "network": network, "image_size": size}
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "monet": info}, path)
    return path


@pytest.mark.parametrize(
    "subcommand, config, held, asks",
    [
        ("fit", "cyclegan", ("GAN", "FastGANGenerator", 64), "a CycleGAN (ResnetGenerator, 32 px)"),
        ("predict", "wgan_gp", ("CycleGAN", "ResnetGenerator", 32), "a GAN (WGANGenerator, 32 px)"),
        ("validate", "fastgan", ("GAN", "WGANGenerator", 32), "a GAN (FastGANGenerator, 32 px)"),
        ("fit", "wgan_gp", ("GAN", "WGANGenerator", 64), "a GAN (WGANGenerator, 32 px)"),
    ],
)
def test_a_checkpoint_of_another_model_is_refused_before_anything_is_built(
    subcommand, config, held, asks, kaggle_dir, tmp_path, capsys, monkeypatch
):
    path = fake_checkpoint(tmp_path / "last.ckpt", *held)
    yaml = ROOT / "configs" / f"{config}.yaml"
    args = [subcommand, *small(yaml, kaggle_dir, tmp_path / "run", "--ckpt_path", str(path))]
    line = one_line_error(args, capsys, monkeypatch)
    family, network, size = held
    assert line == (
        f"monet: error: {path} holds a {family} ({network}, {size} px); {yaml} builds {asks}. "
        "Use the config (and --data.image_size) it was trained with, or a checkpoint of this "
        "config."
    )
    assert not (tmp_path / "run").exists()  # nothing built, nothing written


# -- every option checked before the first image, in one line naming the key -------------------

WGAN = ROOT / "configs" / "wgan_gp.yaml"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--export.size", "0"], "--export.size 0: give the side of the exported images"),
        (["--export.quality", "0"], "--export.quality 0: JPEG quality is between 1 and 100"),
        (["--export.format", "jpeg"], "export.format"),
        (["--export.output", "OUT/painted.jpg"], "OUT/painted.jpg names a .jpg file, but"),
        (["--export.output", "OUT/images.zip", "--export.size", "64"], "a Kaggle zip (OUT/"),
        (
            ["--export.output", "OUT/images.zip", "--data.predict_size", "100"],
            "a Kaggle submission holds 7,000-10,000 images, and this predict makes 100;",
        ),
        (["--trainer.max_time", "20 minutes"], "--trainer.max_time: '20 minutes' is not a"),
    ],
)
def test_predict_options_are_refused_in_one_line_before_anything_is_written(
    options, message, kaggle_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    options = [o.replace("OUT", str(out)) for o in options]
    args = small(WGAN, kaggle_dir, tmp_path / "run", *shrink_nets(WGAN), *options)
    line = one_line_error(["predict", *args], capsys, monkeypatch)
    assert message.replace("OUT", str(out)) in line
    assert not out.exists() and not (tmp_path / "run").exists()  # nothing written


DDPM_SMALL = ROOT / "configs" / "ddpm_small.yaml"


@pytest.mark.parametrize(
    "key, value", [("sampling_steps", "0"), ("sampling_steps", "5000"), ("sampler", "euler")]
)
def test_sampling_options_are_checked_with_a_checkpoint_file_too(
    key, value, kaggle_dir, tmp_path, capsys, monkeypatch
):
    """A checkpoint that sampled with DDIM in 2 steps: the value typed is the one checked."""
    ckpt = fake_checkpoint(tmp_path / "best.ckpt", "Diffusion", "LibUnet", 32)
    saved = torch.load(ckpt, weights_only=True)
    saved["hyper_parameters"].update(sampler="ddim", sampling_steps=2)
    torch.save(saved, ckpt)
    args = small(DDPM_SMALL, kaggle_dir, tmp_path / "run", *shrink_nets(DDPM_SMALL))
    args += ["--ckpt_path", str(ckpt), f"--model.init_args.{key}", value]
    line = one_line_error(
        ["predict", *args, "--export.output", str(tmp_path / "out")], capsys, monkeypatch
    )
    assert key in line and value in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value, line",
    [
        (
            "max_time",
            "20 minutes",
            "monet: error: --trainer.max_time: '20 minutes' is not a duration; use DD:HH:MM:SS "
            'or {"minutes": 20}',
        ),
        (
            "val_check_interval",
            "-1",
            "monet: error: --trainer.val_check_interval -1: You have passed invalid value -1 "
            "for val_check_interval, it has to be in [0.0, 1.0] or an int.",
        ),
        (
            "devices",
            "0,1",
            "monet: error: the trainer cannot start with {'accelerator': 'cpu', 'devices': "
            "'0,1', 'strategy': 'auto'}: `devices` selected with `CPUAccelerator` should be an "
            "int > 0.",
        ),
    ],
)
def test_a_trainer_error_names_its_option(
    option, value, line, kaggle_dir, tmp_path, capsys, monkeypatch
):
    args = small(WGAN, kaggle_dir, tmp_path / "run", *shrink_nets(WGAN))
    assert one_line_error(["fit", *args, f"--trainer.{option}", value], capsys, monkeypatch) == line
    assert not (tmp_path / "run").exists()


def test_a_datamodule_without_what_the_model_needs_is_refused_before_the_trainer_starts(
    kaggle_dir, tmp_path, capsys, monkeypatch
):
    # the DataModule contract (monet.models.common.GenerativeData), checked by the CLI: here a
    # translating family given paintings only
    config = ROOT / "configs" / "cyclegan.yaml"
    args = small(config, kaggle_dir, tmp_path / "run", *shrink_nets(config))
    args += ["--data.class_path", "monet.data.MonetDataModule"]
    assert one_line_error(["fit", *args], capsys, monkeypatch) == (
        "monet: error: CycleGAN translates photos and trains on painting/photo pairs, and "
        "MonetDataModule holds none: use data.class_path monet.data.UnpairedDataModule."
    )
    assert not list(tmp_path.rglob("*.ckpt"))
