"""Runs are measured and tracked: W&B offline contents, run folder files, metrics during fit,
and the missing-weights error at startup."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image
from support import ROOT, shrink_nets, small

from monet.__main__ import cli_main
from monet.errors import ConfigError

CONFIG = ROOT / "configs" / "wgan_gp.yaml"
FEW = ["--trainer.max_epochs", "2", "--trainer.max_steps", "-1"]
FEW += ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]


def fit(data, out, *extra, logger="csv", config=CONFIG):
    args = small(config, data, out, *FEW, *extra, logger=logger)
    return cli_main(["fit", *args, *shrink_nets(config)])


def edited(out: Path, *replacements: tuple[str, str], config: Path = CONFIG) -> Path:
    """A config (wgan_gp) with some values changed (callbacks in a list have no CLI path)."""
    text = config.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    (out / config.name).write_text(text)
    return out / config.name


@pytest.mark.slow
def test_wandb_goes_offline_and_the_run_folder_holds_everything(kaggle_dir, tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no key, so offline by itself
    grids_every_epoch = edited(tmp_path, ("every_n_epochs: 25", "every_n_epochs: 1"))
    cli = fit(kaggle_dir, tmp_path, logger="wandb", config=grids_every_epoch)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert list((runs[0] / "files" / "media" / "images").glob("samples_*.png"))
    run = Path(cli.trainer.checkpoint_callback.dirpath).parent
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert (run / "loss_curves.png").is_file()
    grids = sorted((run / "samples").glob("*.png"))
    gif = Image.open(run / "progress.gif")
    assert len(grids) >= 2 and gif.n_frames == len(grids)  # one frame per grid, in order


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
    every_epoch = edited(
        tmp_path,
        ("every_n_epochs: 50", "every_n_epochs: 1"),
        ("check_val_every_n_epoch: 10", "check_val_every_n_epoch: 1"),
        ("num_samples: 300", "num_samples: 8"),
    )
    cli = fit(kaggle_dir, tmp_path / "b", config=every_epoch)
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
    offline = edited(
        tmp_path,
        ("every_n_epochs: 50", "every_n_epochs: 1"),
        ("check_val_every_n_epoch: 10", "check_val_every_n_epoch: 1"),
        ("num_samples: 300", "num_samples: 8"),
        ("inception: true", "inception: false"),
    )
    logged = fit(kaggle_dir, tmp_path / "run", config=offline).trainer.logged_metrics
    assert "metrics/fid" not in logged
    swd, copies = float(logged["metrics/swd"]), float(logged["metrics/near_copies"])
    assert float(logged["metrics/selection"]) == pytest.approx(swd * (1 + copies / 0.01))


@pytest.mark.slow
def test_a_diffusion_run_logs_near_copies_and_its_best_checkpoint_does_not_reward_them(
    kaggle_dir, tmp_path
):
    every_epoch = edited(
        tmp_path,
        ("every_n_epochs: 100", "every_n_epochs: 1"),
        ("check_val_every_n_epoch: 10", "check_val_every_n_epoch: 1"),
        ("num_samples: 300", "num_samples: 8"),
        ("sampling_steps: 25  # as the config's sampler", "sampling_steps: 2"),
        ("inception: true", "inception: false"),
        config=ROOT / "configs" / "ddpm_small.yaml",
    )
    cli = fit(kaggle_dir, tmp_path / "run", config=every_epoch)
    logged = cli.trainer.logged_metrics
    swd, copies = float(logged["metrics/swd"]), float(logged["metrics/near_copies"])
    assert math.isfinite(swd) and 0 <= copies <= 1
    assert float(logged["metrics/selection"]) == pytest.approx(swd * (1 + copies / 0.01))
    best = [c for c in cli.trainer.checkpoint_callbacks if c.monitor == "metrics/selection"][0]
    assert best.best_model_path and Path(best.best_model_path).is_file()


@pytest.mark.parametrize(
    "change, message",
    [
        (("every_n_epochs: 50", "every_n_epochs: 15"), "not a multiple of"),
        (("swd: true", "swd: true\n        sampling_steps: 10"), "sampling_steps is for diffusion"),
        (("monitor: metrics/selection", "monitor: metrics/fid"), "does not log"),
        (("swd: true", "swd: false"), "does not log"),
    ],
)
def test_metric_settings_that_cannot_work_stop_the_run_at_startup(
    kaggle_dir, tmp_path, change, message
):
    config = edited(tmp_path, change, ("inception: true", "inception: false"))
    with pytest.raises(ConfigError, match=message):
        fit(kaggle_dir, tmp_path / "run", config=config)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_loss_curves_read_metrics_only_at_log_steps_and_stay_bounded():
    from types import SimpleNamespace

    import torch

    from monet.callbacks import LossCurves

    class Metrics(dict):
        reads = 0

        def items(self):
            Metrics.reads += 1
            return super().items()

    curves = LossCurves(max_points=8)
    trainer = SimpleNamespace(
        log_every_n_steps=10,
        callback_metrics=Metrics(),
        lightning_module=SimpleNamespace(automatic_optimization=True),
    )
    for step in range(1, 201):  # batch `step` of automatic optimization: one optimizer step
        trainer.global_step = step - 1
        curves.on_train_batch_start(trainer)
        trainer.global_step = step
        trainer.callback_metrics["train/loss"] = torch.tensor(float(step))
        curves.on_train_batch_end(trainer)
    assert Metrics.reads == 20  # steps 10, 20, ..., 200: never in between
    series = curves.history["train/loss"]
    assert len(series) <= 8 and series[0] == (10, 10.0) and series[-1] == (200, 200.0)


def test_loss_curves_draw_a_panel_per_loss_with_the_raw_and_the_smoothed_line(tmp_path):
    import numpy as np

    from monet.callbacks.curves import draw_curves, smooth

    assert smooth([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # debiased
    history = {
        "train/loss": [(s, 1 / s + 0.1 * (s % 3)) for s in range(1, 300)],
        "train/gen_loss": [(s, float("nan") if s == 5 else s) for s in range(1, 50)],
        "train/empty": [],
    }
    image = np.asarray(Image.open(draw_curves(history, tmp_path / "c.png")).convert("L"))
    assert image.shape[0] > image.shape[1]  # three panels, stacked
    assert (image < 128).mean() > 0.01  # lines, ticks and labels, not a blank page


def test_one_network_probe_goes_through_the_proxy(monkeypatch):
    """W&B and the Inception download ask the same probe; a cluster behind a proxy reaches the
    proxy, not the host (which it cannot resolve)."""
    import socket

    from monet.loggers import wandb_can_sync

    tried = []

    def connect(address, timeout=None):
        tried.append(address)
        return socket.socket()  # closed at once by the probe

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("https_proxy", "http://proxy.cluster:3128")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert wandb_can_sync()
    assert tried == [("proxy.cluster", 3128)]
