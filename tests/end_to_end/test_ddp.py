"""Real DDP: `fit` with two CPU processes (gloo), launched the way a user launches it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from support import ROOT, shrink_nets, small

from monet.errors import ConfigError
from monet.models import Diffusion
from monet.nets import LibUnet


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wgan_gp", "ddpm_lib", "cyclegan", "cut_128"])
def test_two_process_ddp_fit_writes_one_consistent_checkpoint(name, kaggle_dir, tmp_path):
    config = ROOT / "configs" / f"{name}.yaml"
    translator = name in ("cyclegan", "cut_128")
    extra = (
        ["--data.init_args.epoch_size", "16", "--metrics.inception", "false"] if translator else []
    )
    args = small(
        config,
        kaggle_dir,
        tmp_path,
        "--trainer.max_epochs",
        "2",
        "--trainer.max_steps",
        "-1",
        *extra,
    )
    args = [a for a in args if a not in ("--trainer.devices", "1")]  # drop the single device
    cmd = [
        sys.executable,
        "-m",
        "monet",
        "fit",
        *args,
        *shrink_nets(config),
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.accelerator",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    accumulate = 2 if name == "ddpm_lib" else 1
    said = f"effective batch size {4 * 2 * accumulate} = 4 per device x 2 devices x {accumulate}"
    assert said in result.stderr + result.stdout
    ckpts = list(tmp_path.rglob("last.ckpt"))
    assert len(ckpts) == 1
    ckpt = torch.load(ckpts[0], weights_only=False)
    # 12 images over 2 ranks at 4 per device: 1 batch (drop_last) per rank per epoch, 2 epochs
    assert len(ckpt["rng_states"]) == 2  # each rank's own random stream
    assert ckpt["rng_states"][0]["torch"].ne(ckpt["rng_states"][1]["torch"]).any()
    grids = list(tmp_path.rglob("samples/*.png"))
    assert len(grids) == (2 if name == "cyclegan" else 1)  # rank 0 alone; cyclegan: each epoch
    if name == "wgan_gp":
        assert ckpt["counters"]["critic_steps"] == 2  # both ranks ran the same n_critic cycle
    if name == "cyclegan":  # 16 pairs an epoch: 2 batches of 4 per rank, G and D steps each
        assert ckpt["global_step"] == 2 * 2 * 2 and ckpt["image_pools"]["monet"]["count"] == 16
    if name == "cut_128":  # the same batches; both ranks' generators and heads stay equal
        assert ckpt["global_step"] == 2 * 2 * 2 and ckpt["counters"]["generator_steps"] == 4
        assert ckpt["state_dict"]["head.mlps.0.0.weight"].isfinite().all()


def test_sharded_strategies_are_refused_with_the_fix(tmp_path):
    # Lightning itself refuses FSDP without a GPU, so the module's own check (what a GPU run
    # reaches) is driven directly, with a real FSDPStrategy on the trainer it sees.
    model = Diffusion(LibUnet(image_size=32, dim=8, dim_mults=(1, 2)))
    model._trainer = SimpleNamespace(strategy=FSDPStrategy(), datamodule=None, world_size=1)
    with pytest.raises(ConfigError, match="FSDPStrategy is not supported.*--trainer.strategy ddp"):
        model.setup("fit")


@pytest.mark.parametrize(
    "spec",
    [
        ["--trainer.devices", "2", "--trainer.strategy", "ddp"],
        ["--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"],
        ["--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_false"],
        ["--trainer.devices", "1", "--trainer.num_nodes", "2", "--trainer.strategy", "ddp"],
        ["--trainer.devices", "2", "--trainer.strategy", '{"class_path": "DDPStrategy"}'],
        ["--trainer.devices", "2"],  # strategy auto: Lightning picks DDP for two devices
    ],
    ids=["ddp", "ddp_spawn", "find_unused_false", "two_nodes", "DDPStrategy", "auto"],
)
@pytest.mark.parametrize("name", ["wgan_gp", "ddpm_lib"])
def test_gans_get_unused_parameter_detection_under_any_ddp_spec(name, spec, kaggle_dir, tmp_path):
    from monet.__main__ import cli_main

    config = ROOT / "configs" / f"{name}.yaml"
    args = [a for a in small(config, kaggle_dir, tmp_path) if a not in ("--trainer.devices", "1")]
    spec_args = [*args, *shrink_nets(config), "--trainer.accelerator", "cpu", *spec]
    cli = cli_main(spec_args, run=False)  # the trainer Lightning builds, nothing launched
    strategy = cli.trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    found = strategy._ddp_kwargs.get("find_unused_parameters")
    if name == "wgan_gp":  # each critic step leaves the generator without gradients
        assert found is True
    else:  # a denoiser uses every parameter: Lightning's choice stands
        assert found in (None, False)


def test_a_gan_on_one_device_keeps_lightnings_choice_and_one_device_report(
    kaggle_dir, tmp_path, caplog
):
    # the DDP choice is made before the Trainer is built, from a quiet probe of `auto`
    from monet.__main__ import cli_main

    caplog.set_level(logging.INFO)
    config = ROOT / "configs" / "wgan_gp.yaml"
    cli = cli_main([*small(config, kaggle_dir, tmp_path), *shrink_nets(config)], run=False)
    assert not isinstance(cli.trainer.strategy, DDPStrategy)
    assert cli.config.trainer.strategy == "auto"
    assert caplog.text.count("GPU available:") == 1  # the real Trainer's, not the probe's


@pytest.mark.slow
@pytest.mark.parametrize("devices", ["0,1", "[0,1]", "-1", "auto"])
def test_every_device_spec_runs_or_gets_lightnings_message_without_a_traceback(
    devices, kaggle_dir, tmp_path
):
    config = ROOT / "configs" / "wgan_gp.yaml"
    args = [a for a in small(config, kaggle_dir, tmp_path) if a not in ("--trainer.devices", "1")]
    cmd = [sys.executable, "-m", "monet", "fit", *args, *shrink_nets(config)]
    cmd += ["--trainer.accelerator", "cpu", "--trainer.devices", devices]
    cmd += ["--trainer.fast_dev_run", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if result.returncode:
        assert result.returncode == 2 and "monet: error:" in result.stderr


SKEWED = """
import os, sys, time, types
from datetime import timedelta

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

from monet.callbacks import LastCheckpoint, checkpoint

fast_rank, root = int(sys.argv[1]), sys.argv[2]
rank = int(os.environ.get("LOCAL_RANK", 0))
if rank == fast_rank:  # this rank's clock runs 10000 times too fast: it is always due
    start = time.monotonic()
    fast = lambda: start + 10000 * (time.monotonic() - start)  # noqa: E731
    checkpoint.time = types.SimpleNamespace(monotonic=fast)


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(0.1)
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Counted(LastCheckpoint):
    steps = []

    def save(self, trainer):
        Counted.steps.append(trainer.global_step)
        return super().save(trainer)


data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 4)), 4)
trainer = L.Trainer(
    accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=60)),
    max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
    enable_model_summary=False, default_root_dir=root,
    callbacks=[Counted(every_minutes=10, min_seconds=60, check_every_n_steps=2)],
)
trainer.fit(Tiny(), data)
print(f"SAVES rank={trainer.global_rank} steps={Counted.steps}", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "fast_rank, saves",
    [(0, list(range(2, 17, 2))), (1, [8, 16])],  # rank 0's clock decides, for both ranks
    ids=["rank0-due", "rank1-due"],
)
def test_ranks_whose_clocks_disagree_write_last_ckpt_together(fast_rank, saves, tmp_path):
    """Each rank's clock alone would have one rank wait in the write's barrier while the other
    waits in the next step's all-reduce: a hang (gloo's timeout, here 60 s, would end it)."""
    script = tmp_path / "skewed.py"
    script.write_text(SKEWED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), str(fast_rank), str(tmp_path)]
    run = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        text=True,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = run.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, 9)  # both ranks: the second is a child of the first
        out, _ = run.communicate()
        pytest.fail(f"the two ranks hung:\n{out[-3000:]}")
    assert run.returncode == 0, out[-3000:]
    for rank in (0, 1):
        assert f"SAVES rank={rank} steps={saves}" in out, out[-3000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
