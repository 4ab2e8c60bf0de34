"""No host syncs in the training step: `aten::_local_scalar_dense` (the op behind `.item()`,
`bool(tensor)` and `float(tensor)`) is counted over every training batch of real shipped-config
runs, progress bar, loggers and every callback included (`benchmarks/syncs.py`). On a GPU
each such call would wait for the queued kernels; only the batches the loggers log may read
values back. `benchmarks/gpu.py` prints the same count for every config."""

from __future__ import annotations

import sys

import pytest
from support import ROOT, shrink_nets, small

from monet.__main__ import cli_main

sys.path.insert(0, str(ROOT / "benchmarks"))
from syncs import count_syncs  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fastgan", "wgan_gp", "ddpm_lib", "cyclegan_128", "cut_128"])
def test_no_host_sync_in_training_steps_that_do_not_log(name, kaggle_dir, tmp_path, one_thread):
    config = ROOT / "configs" / f"{name}.yaml"
    args = small(
        config,
        kaggle_dir,
        tmp_path,
        "--trainer.max_steps",
        "24",
        "--trainer.log_every_n_steps",
        "4",
        "--trainer.enable_progress_bar",
        "true",
        *shrink_nets(config),
    )
    cli = cli_main(args, run=False)
    batches = count_syncs(cli.trainer, cli.model, cli.datamodule)
    quiet = [n for logs, n in batches if not logs]
    loud = [n for logs, n in batches if logs]
    assert len(quiet) >= 8 and loud, batches
    assert quiet == [0] * len(quiet), batches
    assert sum(loud) > 0  # the count works: logging batches read the losses back
