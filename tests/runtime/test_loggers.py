"""W&B (monet.runtime.loggers): with no API key a run goes offline by itself, and the run folder
holds the offline run with its sample images, the checkpoints, the config, the loss curves, the
grids and their GIF."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image
from support import fit_few_epochs as fit


@pytest.mark.slow
def test_wandb_goes_offline_and_the_run_folder_holds_everything(
    kaggle_dir, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no key, so offline by itself
    cli = fit(kaggle_dir, tmp_path, "--samples.every_n_epochs", "1", logger="wandb")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert f"upload this run with: wandb sync {runs[0].resolve()}" in caplog.text
    assert list((runs[0] / "files" / "media" / "images").glob("samples_*.png"))
    run = Path(cli.trainer.checkpoint_callback.dirpath).parent
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
    assert (run / "loss_curves.png").is_file()
    grids = sorted((run / "samples").glob("*.png"))
    gif = Image.open(run / "progress.gif")
    assert len(grids) >= 2 and gif.n_frames == len(grids)  # one frame per grid, in order
