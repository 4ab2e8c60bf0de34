"""The CUT LightningModule: its head built eagerly from the generator's encoder, one-line
errors, and CLI runs of configs/cut_128.yaml: fit with grids, metrics beside the untranslated
baseline and val/nce; a Kaggle images.zip from its checkpoint; a CUT checkpoint refused by a
CycleGAN config and back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import (
    CYCLEGAN,
    ROOT,
    jpeg_bytes,
    make_kaggle_dir,
    one_line_error,
    random_images,
    run_fit,
    shrink_nets,
    small,
    write_tfrecord,
)

from monet.__main__ import cli_main
from monet.callbacks.submission import check_submission
from monet.errors import ConfigError
from monet.models import CUT
from monet.nets import PatchDiscriminator, ResnetGenerator
from monet.nets.cut import layer_features

CUT_128 = ROOT / "configs" / "cut_128.yaml"
FASTCUT_128 = ROOT / "configs" / "fastcut_128.yaml"


def tiny_cut(**kw) -> CUT:
    return CUT(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32), **kw)


def test_the_head_is_built_from_the_encoder_layers_and_trained_with_the_generator():
    model = tiny_cut(nce_layers=(0, 4, 7, 10), head_features=16)
    assert [mlp[0].in_features for mlp in model.head.mlps] == [3, 8, 16, 16]
    assert [mlp[-1].out_features for mlp in model.head.mlps] == [16] * 4
    opt_g, opt_c = model.configure_optimizers()
    in_g = {id(p) for group in opt_g.param_groups for p in group["params"]}
    assert {id(p) for p in model.head.parameters()} <= in_g
    assert {id(p) for p in model.generator.parameters()} <= in_g
    assert not in_g & {id(p) for p in model.critic.parameters()}
    assert "head.mlps.0.0.weight" in model.state_dict()  # in checkpoints from the first save
    assert model.translates and not hasattr(model, "inverse")


def test_the_nce_loss_of_a_batch_falls_when_the_output_is_the_input():
    torch.manual_seed(0)
    model = tiny_cut()
    photos = torch.rand(2, 3, 32, 32) * 2 - 1

    sources, _ = layer_features(model.generator.net, photos, model.nce_layers)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731 - the same locations
    same = model.patch_nce(sources, photos, gen())  # an identity translation keeps every patch
    noise = model.patch_nce(sources, torch.rand_like(photos) * 2 - 1, gen())
    assert same < noise


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"nce_layers": (0, 40)}, r"nce_layers=\[0, 40\]: give indices of generator.net between"),
        ({"nce_weight": -1}, r"nce_weight=-1 must be at least 0"),
        ({"nce_temperature": 0}, r"nce_temperature=0 must be above 0"),
        ({"num_patches": 0}, r"num_patches=0 must be at least 1"),
    ],
)
def test_bad_values_are_refused_in_one_line(kw, message):
    with pytest.raises(ConfigError, match=message) as err:
        tiny_cut(**kw)
    assert "\n" not in str(err.value)


def test_a_generator_without_layers_to_read_is_refused():
    with pytest.raises(ConfigError, match="Conv2d has none: use monet.nets.ResnetGenerator"):
        CUT(torch.nn.Conv2d(3, 3, 1), PatchDiscriminator(4, image_size=32))


def test_a_cut_needs_photos(kaggle_dir):
    model = tiny_cut()
    said = "CUT translates photos and trains on painting/photo pairs, and no DataModule gave them"
    with pytest.raises(ConfigError, match=f"{said}: use data.class_path"):
        model.sample_inputs(2)
    with pytest.raises(ConfigError, match=said):
        model.training_step(torch.zeros(1, 3, 32, 32), 0)


@pytest.mark.slow
@pytest.mark.parametrize("config", [CUT_128, FASTCUT_128])
def test_trains_from_the_cli_with_grids_metrics_and_baseline(config, kaggle_dir, tmp_path):
    cli = run_fit(
        kaggle_dir,
        tmp_path,
        *("--trainer.max_epochs", "5", "--data.init_args.epoch_size", "4"),
        *("--trainer.log_every_n_steps", "1"),
        config=config,  # grids, metrics and validation every 5 epochs: once, at the end
    )
    model, run = cli.model, Path(cli.trainer.log_dir)
    assert isinstance(model, CUT) and cli.trainer.global_step == 5 * 2  # a D and a G step a batch
    assert model.generator_steps == 5 and model.ema.steps == 5
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"metrics/swd", "baseline/swd", "val/nce", "train/nce", "train/gen_loss"} <= logged
    assert {"train/critic_loss"} <= logged
    grid = Image.open(sorted((run / "samples").glob("*.png"))[-1])
    assert grid.size[0] > grid.size[1]  # photos beside their paintings
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["monet"]["family"] == "CUT" and ckpt["counters"]["generator_steps"] == 5
    assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [5, 5]
    assert model.nce_identity == (config == CUT_128)


@pytest.mark.slow
def test_a_cut_checkpoint_writes_a_complete_kaggle_submission(kaggle_dir, tmp_path):
    run_fit(kaggle_dir, tmp_path, "--trainer.max_steps", "2", config=CUT_128)
    photos = tmp_path / "photos"  # 7,000 small photos in one TFRecord, as Kaggle ships them
    items = [(f"photo{i}", jpeg_bytes(a)) for i, a in enumerate(random_images(7000, 8, seed=2))]
    write_tfrecord(photos / "photo_tfrec" / "photo00-7000.tfrec", items)
    zip_path = tmp_path / "images.zip"
    extra = ["--data.init_args.predict_root", str(photos)]
    extra += ["--data.init_args.predict_image_size", "32", "--data.batch_size", "500"]
    args = small(CUT_128, kaggle_dir, tmp_path, "--ckpt_path", "last", *extra)
    cli_main(["predict", *args, "--export.output", str(zip_path), *shrink_nets(CUT_128)])
    assert check_submission(zip_path) == 7000
    report = json.loads((tmp_path / "images.memorization.json").read_text())
    assert report["near_copy_share"] == 0.0


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, dict[Path, Path]]:
    """The data and the last.ckpt of a one-step run of each translator."""
    root = tmp_path_factory.mktemp("translators")
    data = make_kaggle_dir(root / "data")
    ckpts = {}
    for config in (CUT_128, CYCLEGAN):
        out = root / config.stem
        args = small(config, data, out, "--trainer.max_steps", "2", "--metrics.inception", "false")
        cli_main(["fit", *args, *shrink_nets(config)])
        (ckpts[config],) = out.rglob("last.ckpt")
    return data, ckpts


@pytest.mark.parametrize(
    "subcommand, held, used",
    [
        ("predict", (CUT_128, "CUT"), (CYCLEGAN, "CycleGAN")),
        ("fit", (CUT_128, "CUT"), (CYCLEGAN, "CycleGAN")),
        ("predict", (CYCLEGAN, "CycleGAN"), (CUT_128, "CUT")),
        ("fit", (CYCLEGAN, "CycleGAN"), (CUT_128, "CUT")),
    ],
)
def test_a_checkpoint_of_the_other_translator_is_refused_in_one_line(
    subcommand, held, used, checkpoints, tmp_path, capsys, monkeypatch
):
    data, ckpts = checkpoints
    (held_config, held_family), (config, family) = held, used
    ckpt = ckpts[held_config]
    args = small(config, data, tmp_path / "run", "--ckpt_path", str(ckpt), *shrink_nets(config))
    line = one_line_error([subcommand, *args], capsys, monkeypatch)
    assert line == (
        f"monet: error: {ckpt} holds a {held_family} (ResnetGenerator, 32 px); {config} builds "
        f"a {family} (ResnetGenerator, 32 px). Use the config (and --data.image_size) it was "
        "trained with, or a checkpoint of this config."
    )
    assert not (tmp_path / "run").exists()  # nothing built, nothing written
