"""The command line wins over a checkpoint: with `--ckpt_path` a file, `last` or `best`, the
options given for `fit`, `validate` and `predict` (a sampling option, an export option, a trainer
option) are the ones that run and the ones the run's config.yaml records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from support import ROOT, make_kaggle_dir, shrink_nets, small

from monet.__main__ import cli_main
from monet.runtime.rundir import run_dir

DDPM = ROOT / "configs" / "ddpm_small.yaml"
TINY = ["--data.image_size", "16", "--model.init_args.denoiser.init_args.dim_mults", "[1, 2]"]
TINY += ["--data.batch_size", "2", "--metrics.inception", "false", *shrink_nets(DDPM)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder with the data and a two-step ddpm_small run that sampled in 2 steps; its
    last.ckpt is also its best checkpoint (metrics pick one after far more steps)."""
    root = tmp_path_factory.mktemp("trained")
    data = make_kaggle_dir(root / "data", n=4, photos=1)
    args = small(DDPM, data, root / "runs", *TINY, "--trainer.max_steps", "2")
    cli_main(["fit", *args, "--model.init_args.sampling_steps", "2"])
    (last,) = (root / "runs").rglob("last.ckpt")
    shutil.copy(last, last.with_name("best-epoch=0-step=2.ckpt"))
    assert torch.load(last, weights_only=True)["hyper_parameters"]["sampling_steps"] == 2
    return root


def form_of(ckpt_path: str, runs: Path) -> str:
    return str(next(runs.rglob("last.ckpt"))) if ckpt_path == "file" else ckpt_path


@pytest.mark.slow
@pytest.mark.parametrize("form", ["file", "last", "best"])
@pytest.mark.parametrize("subcommand", ["fit", "validate", "predict"])
def test_options_on_the_command_line_win_over_the_checkpoint(subcommand, form, trained, tmp_path):
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)  # each test its own experiment
    runs = tmp_path / "runs"
    out = tmp_path / "painted"
    options = ["--model.init_args.sampling_steps", "3"]  # the checkpoint says 2
    options += ["--export.size", "24", "--export.output", str(out)]
    options += {
        "fit": ["--trainer.max_steps", "3"],
        "validate": ["--trainer.limit_val_batches", "1"],
        "predict": ["--trainer.limit_predict_batches", "2", "--data.predict_size", "6"],
    }[subcommand]
    ckpt = ["--ckpt_path", form_of(form, runs)]
    cli = cli_main([subcommand, *small(DDPM, tmp_path / "data", runs, *TINY, *ckpt, *options)])
    assert cli.model.sampling_steps == 3
    assert cli.config_init[subcommand]["export"].size == 24
    recorded = yaml.safe_load((run_dir(cli.trainer) / "config.yaml").read_text())
    assert recorded["model"]["init_args"]["sampling_steps"] == 3
    assert recorded["export"]["size"] == 24
    if subcommand == "fit":
        assert cli.trainer.global_step == 3 and recorded["trainer"]["max_steps"] == 3
    elif subcommand == "validate":
        assert recorded["trainer"]["limit_val_batches"] == 1
    else:  # two batches of two images, at the export's size
        assert recorded["trainer"]["limit_predict_batches"] == 2
        written = sorted(out.glob("*.png"))
        assert [p.name for p in written] == [f"{i:05d}.png" for i in range(4)]
        assert Image.open(written[0]).size == (24, 24)
