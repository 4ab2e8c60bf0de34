"""Exact resume: a run stopped part-way and continued with --ckpt_path last ends with the same
weights, optimizer state, EMA and counters as one that ran straight through."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, shrink_nets, small

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


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,extra",
    [
        (
            "wgan_gp_diffaug",
            ["--data.augment.rotation.p", "0.5"],
        ),  # noise, DiffAugment, EMA, aug RNG
        ("ddpm_lib", []),  # timesteps, noise, EMA, accumulation, bf16
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


def test_ckpt_path_last_with_nothing_to_resume_says_so(kaggle_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"no last.ckpt under .*nothing to resume"):
        fit(ROOT / "configs/wgan_gp.yaml", kaggle_dir, tmp_path, 1, "--ckpt_path", "last")
