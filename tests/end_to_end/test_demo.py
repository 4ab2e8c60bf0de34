"""`make demo` as a user runs it, in a subprocess with the W&B logger (offline): a quiet console,
with no warning or log line about Lightning's or W&B's own internals that a user cannot act on."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from support import ROOT, shrink_nets

FASTGAN = ROOT / "configs" / "fastgan.yaml"
NOISE = re.compile(r"warn|deprecat|weights_only|tip:", re.IGNORECASE)


@pytest.mark.slow
def test_the_demo_console_is_quiet(kaggle_dir, tmp_path):
    demo = ["--trainer.max_steps", "3", "--trainer.logger.init_args.name", "demo"]
    demo += ["--trainer.enable_progress_bar", "true"]  # the Makefile's demo target
    small = ["--data.image_size", "32", "--data.batch_size", "1", "--trainer.accelerator", "cpu"]
    small += ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir"]
    small += [str(tmp_path), *shrink_nets(FASTGAN)]  # 12 paintings: 12 batches an epoch
    args = ["fit", "--config", str(FASTGAN), "--data.root", str(kaggle_dir), *demo, *small]
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "-m", "monet", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert list(tmp_path.rglob("last.ckpt")) and list(tmp_path.rglob("samples/*.png"))
    lines = re.split(r"[\r\n]+", output)
    assert [line for line in lines if NOISE.search(line)] == []
