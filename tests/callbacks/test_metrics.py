"""EvalMetrics during real fits: FID, KID, MiFID, SWD and near-copies logged and the best
checkpoint picked by them, with and without Inception, for a GAN and a diffusion model;
missing weights, settings that cannot work and a cadence the epochs never reach are said at
start-up."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support import ROOT, shrink_nets, small
from support import fit_few_epochs as fit

from monet.__main__ import cli_main
from monet.errors import ConfigError

EVERY_EPOCH = [  # metrics (and so the best checkpoint) every epoch, on 8 samples
    *("--metrics.every_n_epochs", "1", "--metrics.num_samples", "8"),
    *("--trainer.check_val_every_n_epoch", "1"),
]
OFFLINE = ["--metrics.inception", "false"]


def test_missing_inception_weights_stop_the_run_at_startup(kaggle_dir, tmp_path, no_weights):
    with pytest.raises(ConfigError) as err:
        fit(kaggle_dir, tmp_path, "--trainer.max_epochs", "60")  # metrics due at epoch 50
    message = str(err.value)
    for needle in (
        "weights-inception-2015-12-05-6726825d.pth",
        "https://",
        "inception_weights",
        "MONET_INCEPTION_WEIGHTS",
        str(no_weights),
    ):
        assert needle in message
    assert not list(tmp_path.rglob("*.ckpt"))  # it stopped before any training


@pytest.mark.slow
def test_fid_kid_mifid_swd_are_logged_and_pick_the_best_checkpoint(
    kaggle_dir, tmp_path, weights_file, monkeypatch
):
    monkeypatch.setenv("MONET_INCEPTION_WEIGHTS", str(weights_file))
    cli = fit(kaggle_dir, tmp_path / "a", "--trainer.max_epochs", "1")  # cadence is 50 epochs
    assert "metrics/fid" not in cli.trainer.logged_metrics
    cli = fit(kaggle_dir, tmp_path / "b", *EVERY_EPOCH)
    logged = cli.trainer.logged_metrics
    for key in (
        "metrics/fid",
        "metrics/kid_mean",
        "metrics/kid_std",
        "metrics/mifid",
        "metrics/swd",
        "metrics/near_copies",
    ):
        assert math.isfinite(float(logged[key])), key
    assert logged["metrics/selection"] == logged["metrics/mifid"]  # Inception runs: MiFID
    best = [c for c in cli.trainer.checkpoint_callbacks if c.monitor == "metrics/selection"][0]
    assert best.best_model_path and Path(best.best_model_path).is_file()


@pytest.mark.slow
def test_without_inception_the_best_checkpoint_follows_swd_and_near_copies(kaggle_dir, tmp_path):
    logged = fit(kaggle_dir, tmp_path / "run", *EVERY_EPOCH, *OFFLINE).trainer.logged_metrics
    assert "metrics/fid" not in logged
    swd, copies = float(logged["metrics/swd"]), float(logged["metrics/near_copies"])
    assert float(logged["metrics/selection"]) == pytest.approx(swd * (1 + copies / 0.01))


@pytest.mark.slow
def test_a_diffusion_run_logs_near_copies_and_its_best_checkpoint_does_not_reward_them(
    kaggle_dir, tmp_path
):
    steps = ["--model.init_args.sampling_steps", "2"]  # the metric samples' too
    config = ROOT / "configs" / "ddpm_small.yaml"
    cli = fit(kaggle_dir, tmp_path / "run", *EVERY_EPOCH, *OFFLINE, *steps, config=config)
    logged = cli.trainer.logged_metrics
    swd, copies = float(logged["metrics/swd"]), float(logged["metrics/near_copies"])
    assert math.isfinite(swd) and 0 <= copies <= 1
    assert float(logged["metrics/selection"]) == pytest.approx(swd * (1 + copies / 0.01))
    best = [c for c in cli.trainer.checkpoint_callbacks if c.monitor == "metrics/selection"][0]
    assert best.best_model_path and Path(best.best_model_path).is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        (("--metrics.every_n_epochs", "15"), "not a multiple of"),
        (("--samples.sampling_steps", "10"), "sampling_steps is for diffusion"),
        (("--best.monitor", "metrics/fid"), "does not log"),
        (("--metrics.swd", "false"), "does not log"),
    ],
)
def test_metric_settings_that_cannot_work_stop_the_run_at_startup(
    kaggle_dir, tmp_path, change, message
):
    with pytest.raises(ConfigError, match=message):
        fit(kaggle_dir, tmp_path / "run", *change, *OFFLINE)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_metric_cadence_the_epochs_never_reach_is_said_at_start_up(kaggle_dir, tmp_path):
    path = ROOT / "configs" / "wgan_gp.yaml"  # metrics and the best checkpoint every 50 epochs
    args = [*small(path, kaggle_dir, tmp_path), *shrink_nets(path), "--metrics.inception", "false"]
    epochs = ["--trainer.max_epochs", "1", "--trainer.max_steps", "-1"]
    with pytest.warns(UserWarning, match=r"every_n_epochs=50 but trainer.max_epochs=1"):
        cli_main(["fit", *args, *epochs])
