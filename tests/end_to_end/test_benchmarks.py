"""The benchmark scripts run end to end at tiny settings (their numbers are not checked here),
and the FLOP counting behind the share-of-peak column counts what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support import ROOT

from monet.nets.common import cpu_has_bf16

sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu import COMPILED, CONFIGS, QUALITY  # noqa: E402
from train import FlopCount  # noqa: E402


def run(command: list[str], timeout: int = 600, **env_vars: str) -> list[str]:
    """`command` in the repository on the synthetic data; it must succeed: its stdout lines."""
    env = {k: v for k, v in os.environ.items() if k != "MONET_DATA"}  # the synthetic data
    env.update(env_vars)
    out = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def run_script(name: str, *args: str, **env_vars: str) -> list[str]:
    return run([sys.executable, str(ROOT / "benchmarks" / name), *args], **env_vars)


def quality_rows(lines: list[str]) -> dict[str, list[str]]:
    """quality.py's table, {row name: its 6 columns}: SWD, x floor, near-copies, contrast,
    4-px grid, steps."""
    rows = (line.split("|") for line in lines)
    return {r[0].strip(): r[1:] for r in rows if len(r) == 7}


def test_flop_count_of_a_linear_layer_forward_and_backward():
    layer = torch.nn.Linear(32, 8)
    x = torch.randn(4, 32, requires_grad=True)
    with FlopCount() as count:
        layer(x).sum().backward()
    # forward 2*B*I*O; backward: the input's gradient and the weight's, 2*B*I*O each
    assert count.total == 3 * 2 * 4 * 32 * 8


def test_flop_count_includes_the_cpu_fused_attention():
    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    with FlopCount() as count:
        out = F.scaled_dot_product_attention(q, k, v)
    assert count.total == 2 * (2 * 2 * 4 * 16 * 16 * 8)  # q k^T, then the weights times v
    with FlopCount() as count:
        out.sum().backward()
    assert count.total > 0


@pytest.mark.slow
@pytest.mark.parametrize("forced", [{}, {"MONET_BF16": "0"}], ids=["this CPU", "no bf16 units"])
def test_train_benchmark_prints_a_row_per_config_and_precision(forced, monkeypatch):
    lines = run_script(
        "train.py",
        *("--configs", "wgan_gp", "ddpm_lib", "--image-size", "32", "--batch-size", "4"),
        *("--steps", "1", "--warmup", "1", "--rounds", "1"),
        **forced,
    )
    for key, value in forced.items():
        monkeypatch.setenv(key, value)
    rows = [line.split("|") for line in lines if line.startswith(("wgan_gp", "ddpm_lib"))]
    # bf16 rows only where the CPU has bfloat16 units: emulated, they take minutes a step
    precisions = ["32-true", "bf16-mixed"] if cpu_has_bf16() else ["32-true"]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        (c, p) for c in ("wgan_gp", "ddpm_lib") for p in precisions
    ]
    assert any(line.startswith("bf16-mixed left out") for line in lines) != cpu_has_bf16()
    assert all(float(r[2]) > 0 and float(r[3]) > 0 and float(r[5]) > 0 for r in rows)


@pytest.mark.slow
def test_data_benchmark_prints_both_pipelines_under_both_allocators():
    lines = run_script("data.py", "--sizes", "32", "--images", "64", "--rounds", "1")
    rows = [line for line in lines if line.strip().startswith("32 |")]
    assert len(rows) == 6 and sum("monet:" in r for r in rows) == 2


@pytest.mark.slow
def test_quality_benchmark_trains_exports_and_prints_its_table():
    lines = run_script(
        "quality.py",
        str(ROOT / "configs" / "fastgan.yaml"),
        *("--steps", "4", "--num", "8", "--size", "32", "--plain-steps", "2"),
        *("--set", "data.image_size=32", "data.batch_size=4"),  # W&B offline, as it ships
    )
    summary = next(line for line in lines if line.startswith("fastgan:"))
    assert "4 optimizer steps" in summary and "plain loop" in summary
    rows = quality_rows(lines)
    assert float(rows["two halves of the real paintings (the floor)"][1]) == 1.0
    ema = rows["generated, EMA network (buffers: standing)"]
    assert float(ema[0]) > 0 and ema[2].strip().endswith("%")
    assert float(ema[3]) > 0  # contrast: the samples' pixel std over the paintings'
    assert ema[5].strip() == "1 G / 3 D"  # n_critic 2: critic, critic + generator, critic
    assert "generated, raw network" in rows
    assert "generated, raw network, standing BatchNorm statistics" in rows


SMALL_CYCLEGAN = (
    "model.init_args.generator.init_args.features=4",
    "model.init_args.generator.init_args.blocks=1",
    "model.init_args.critic.init_args.features=4",
)


@pytest.mark.slow
def test_translation_benchmark_prints_lightning_and_plain_rates():
    lines = run_script(
        "translation.py",
        *("--sizes", "128", "--batches", "1", "2", "--steps", "1", "--warmup", "1"),
        *("--rounds", "1", "--set", *SMALL_CYCLEGAN),
    )
    rows = [line.split("|") for line in lines if line.startswith("cyclegan_128")]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [("128", "1"), ("128", "2")]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, extra",
    [("cyclegan_128", ()), ("cut_128", ("model.init_args.nce_layers=[0,4,7,10]",))],
)
def test_quality_benchmark_scores_translated_photos_beside_the_same_photos(name, extra, tmp_path):
    lines = run_script(
        "quality.py",
        str(ROOT / "configs" / f"{name}.yaml"),
        *("--steps", "4", "--num", "4", "--size", "32", "--plain-steps", "1"),
        *("--out", str(tmp_path)),
        *("--set", "data.image_size=32", "data.batch_size=2", *SMALL_CYCLEGAN, *extra),
    )
    rows = quality_rows(lines)
    assert "4 Kaggle photos, not paintings" in rows  # the very photos that were translated
    translated = rows["translated photos, EMA network (buffers: average)"]
    assert float(translated[0]) > 0 and translated[5].strip() == "2 G / 2 D"
    assert "translated photos, raw network" in rows
    photos, translated = torch.load(tmp_path / "row1.pt"), torch.load(tmp_path / "row2.pt")
    assert photos.shape == translated.shape == (4, 3, 32, 32)  # kept for a side-by-side sheet
    sheet = tmp_path / "sheet.png"
    run_script("sheet.py", str(tmp_path), "1", "2", "--per-line", "2", "--to", str(sheet))
    # strips of 2: photos 0-1 above their translations, then photos 2-3 above theirs
    assert Image.open(sheet).size == (2 + 2 * 34, 2 + 4 * 34)


@pytest.mark.slow
def test_bench_gpu_smoke_prints_a_row_per_config_and_precision_and_quality_rows():
    """`make bench-gpu SMOKE=1`, the Makefile target itself: the GPU command's path on a CPU."""
    make = ["make", "-s", "-o", ".venv/.installed", "bench-gpu", "SMOKE=1"]
    lines = run([*make, f"BIN={Path(sys.executable).parent}"], timeout=900)
    stdout = "\n".join(lines)
    rows = [[c.strip() for c in line.split("|")] for line in lines if line.count("|") == 10]
    rows = [r for r in rows if r[0] != "config"]
    assert not [line for line in lines if "failed" in line or "skipped" in line], stdout
    expected = [(c, p, "eager") for c in CONFIGS[:3] for p in ("32-true", "bf16-mixed")]
    expected += [(c, "bf16-mixed", "NHWC+compile") for c in COMPILED]
    assert sorted((r[0], r[4], r[5]) for r in rows) == sorted(expected), stdout
    assert {r[1] for r in rows} == {"GAN", "diffusion", "CycleGAN"}
    for row in rows:
        assert int(row[2]) == 32 and int(row[3]) == 4
        images, warm, gflop = float(row[6]), float(row[7]), float(row[8])
        share, syncs = float(row[9].rstrip("%")), float(row[10])
        # warm-up seconds and the share of peak are printed to 0.1: 0.0 on a fast machine
        assert images > 0 and gflop > 0 and warm >= 0 and share >= 0 and syncs >= 0, row
    for config in QUALITY:  # quality.py's summary and its table
        assert any(line.startswith(f"{config}: ") for line in lines), stdout
    assert sum(line.startswith("two halves of the real paintings") for line in lines) == 2
    assert any(line.startswith("bench-gpu: ") and line.endswith(" s in all") for line in lines)


@pytest.mark.slow
def test_quality_scores_every_kept_ema_length_and_samplers_table_reads_its_checkpoint(tmp_path):
    """ddpm_small, tiny: quality.py's EMA-length rows, then samplers.py on the checkpoint."""
    config = str(ROOT / "configs" / "ddpm_small.yaml")
    tiny = ["data.image_size=16", "data.batch_size=4", "model.init_args.denoiser.init_args.dim=8"]
    tiny += ["model.init_args.sample_batch_size=8"]
    lines = run_script(
        "quality.py",
        config,
        *("--steps", "2", "--num", "4", "--size", "16", "--plain-steps", "0"),
        *("--out", str(tmp_path), "--set", *tiny),
    )
    summary = next(line for line in lines if line.startswith("ddpm_small:"))
    assert "samples: dpmpp_2m, 10 steps (10 network evaluations)" in summary
    rows = quality_rows(lines)
    for half_life in ("1000", "5000", "10000"):  # kept beside the 2,500 that samples
        assert f"generated, EMA half-life {half_life} images" in rows
    ckpt = next(tmp_path.rglob("last.ckpt"))
    lines = run_script(
        "samplers.py",
        config,
        str(ckpt),
        *("--num", "4", "--size", "16", "--set", *tiny),
        *("--samplers", "heun", "dpmpp_2m"),
    )
    table = [r for r in (line.split("|") for line in lines) if len(r) == 7][1:]
    assert [(r[0].strip(), int(r[1])) for r in table] == [
        ("heun", 9),
        ("heun", 25),
        ("heun", 49),
        ("heun", 99),
        ("dpmpp_2m", 10),
        ("dpmpp_2m", 25),
        ("dpmpp_2m", 50),
        ("dpmpp_2m", 100),
    ]
    assert all(float(r[5]) > 0 for r in table)  # contrast


@pytest.mark.slow
def test_small_unet_benchmark_prints_each_shape_against_the_old_one():
    lines = run_script("small_unet.py", "--rounds", "1", "--steps", "1", "--batch-size", "2")
    rows = [r for r in (line.split("|") for line in lines) if len(r) == 4][1:]
    assert len(rows) == 3 and rows[0][3].strip() == "1.00x"
