"""Photo -> Monet: the two-domain DataModule, the CycleGAN family from the CLI, metrics with the
untranslated baseline, and predict (one painting per photo, in order; a Kaggle images.zip)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import ROOT, jpeg_bytes, random_images, shrink_nets, small, write_tfrecord

from monet.__main__ import cli_main
from monet.callbacks.submission import check_submission
from monet.data import Augment, FiveCrop, UnpairedDataModule
from monet.data.augment import resize_square
from monet.errors import ConfigError
from monet.images import to_unit
from monet.models import CycleGAN, LinearDecay
from monet.nets import PatchDiscriminator, ResnetGenerator

CYCLEGAN = ROOT / "configs" / "cyclegan.yaml"


def datamodule(root: Path, **kw) -> UnpairedDataModule:
    dm = UnpairedDataModule(str(root), image_size=32, batch_size=kw.pop("batch_size", 4), **kw)
    dm.setup("fit")
    return dm


def batches(dm: UnpairedDataModule, steps: range) -> list[dict[str, torch.Tensor]]:
    return [dm.pairs(step, 0, dm.batch_size, "cpu") for step in steps]


def fingerprint(x: torch.Tensor) -> list[float]:
    return [round(v, 3) for v in x.mean(dim=(1, 2, 3)).tolist()]


def test_each_domain_is_shuffled_on_its_own_and_the_shorter_one_repeats(kaggle_dir):
    dm = datamodule(kaggle_dir, batch_size=2)  # 12 paintings, 5 photos
    assert dm.epoch_length == 12 and len(dm.train_dataloader()) == 6
    seen = batches(dm, range(6))
    monet = [v for b in seen for v in fingerprint(b["monet"])]
    photo = [v for b in seen for v in fingerprint(b["photo"])]
    assert sorted(monet) == sorted(fingerprint(to_unit(dm.train_images)))  # each painting once
    assert sorted(photo[:5]) == sorted(fingerprint(to_unit(dm.photo.train_images)))  # a round
    assert sorted(photo[5:10]) == sorted(photo[:5]) and photo[5:10] != photo[:5]  # reshuffled
    for b in seen:
        assert b["monet"].shape == b["photo"].shape == (2, 3, 32, 32)
        assert b["monet"].min() >= -1 and b["photo"].max() <= 1


def test_pairs_are_reproducible_and_resume_where_they_stopped(kaggle_dir):
    a, b = datamodule(kaggle_dir, seed=3), datamodule(kaggle_dir, seed=3)
    for x, y in zip(batches(a, range(4)), batches(b, range(4)), strict=True):
        assert torch.equal(x["monet"], y["monet"]) and torch.equal(x["photo"], y["photo"])
    other = datamodule(kaggle_dir, seed=4)
    assert not torch.equal(batches(other, range(1))[0]["monet"], batches(a, range(1))[0]["monet"])
    resumed = datamodule(kaggle_dir, seed=3)
    resumed.load_state_dict({"steps": 7})
    assert resumed._steps == 7  # the DataModule's state in every checkpoint: the stream position


def test_epoch_size_and_wrong_settings(kaggle_dir):
    assert datamodule(kaggle_dir, epoch_size=40).epoch_length == 40
    with pytest.raises(ConfigError, match="epoch_size=2 must be at least the batch size"):
        UnpairedDataModule(str(kaggle_dir), batch_size=4, epoch_size=2)
    with pytest.raises(ConfigError, match="five_crop .* turn it off for translation"):
        UnpairedDataModule(str(kaggle_dir), augment=Augment(five_crop=FiveCrop(enabled=True)))


def test_linear_decay_is_the_papers_schedule():
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=2e-4)
    schedule = LinearDecay(opt, constant=3, decay=3)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0.0])
    with pytest.raises(ConfigError, match="constant=-1"):
        LinearDecay(opt, constant=-1)


def run_fit(data: Path, out: Path, *extra: str, config: Path = CYCLEGAN):
    args = small(config, data, out, "--inception", "false", *extra, *shrink_nets(config))
    return cli_main(["fit", *args])


def test_trains_from_the_cli_with_grids_metrics_baseline_and_resume_state(kaggle_dir, tmp_path):
    cli = run_fit(
        kaggle_dir,
        tmp_path,
        *("--trainer.max_epochs", "2", "--data.init_args.epoch_size", "8"),
        *("--data.batch_size", "2", "--trainer.log_every_n_steps", "2"),
    )
    model, run = cli.model, Path(cli.trainer.log_dir)
    assert isinstance(model, CycleGAN) and cli.trainer.global_step == 2 * 2 * 4  # G + D steps
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"metrics/swd", "baseline/swd", "val/cycle", "train/cycle", "train/identity"} <= logged
    baseline = [float(r["baseline/swd"]) for r in rows if r.get("baseline/swd")]
    assert len(baseline) == 2 and baseline[0] == baseline[1] > 0  # the photos: scored once
    grid = Image.open(sorted((run / "samples").glob("*.png"))[-1])
    assert grid.size[0] > grid.size[1]  # 16 photos and their 16 paintings, 8 to a row
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["image_pools"]["monet"]["count"] == 16  # 8 batches of 2 into a pool of 50
    assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [2, 2]


def test_trains_on_the_real_kaggle_tfrecords_of_both_domains(shared_data, tmp_path):
    # the 300 paintings' TFRecords; the shared data holds the photos as JPEGs (400 of the
    # 7,038): 40 of them go into a TFRecord of Kaggle's layout, the rest as JPEGs
    jpegs = sorted((shared_data / "photo_jpg").glob("*.jpg"))
    items = [(p.stem, p.read_bytes()) for p in jpegs[:40]]
    write_tfrecord(tmp_path / "photos" / "photo_tfrec" / "photo00-40.tfrec", items)
    for root, expected in ((tmp_path / "photos", 40), (shared_data, len(jpegs))):
        cli = run_fit(
            shared_data,
            tmp_path / f"run{expected}",
            *("--trainer.fast_dev_run", "2", "--data.init_args.photo_root", str(root)),
        )
        dm = cli.datamodule
        assert len(dm.real) == 300 and len(dm.photo.real) == expected
        assert dm.photo.names[0] == jpegs[0].stem and cli.trainer.global_step >= 2


def photo_folder(root: Path, n: int) -> list[Path]:
    """`n` photos of several sizes and formats that PIL reads, named in a known order."""
    formats = [("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("GIF", "gif"), ("PPM", "ppm")]
    root.mkdir(parents=True)
    paths = []
    for i, array in enumerate(random_images(n, 40, seed=7)):
        fmt, suffix = formats[i % len(formats)]
        image = Image.fromarray(array).resize((40 + 4 * i, 36))
        path = root / f"p{i:02d}.{suffix}"
        image.save(path, fmt)
        paths.append(path)
    return paths


def test_predict_translates_every_photo_of_a_folder_in_order(kaggle_dir, tmp_path):
    run_fit(kaggle_dir, tmp_path, "--trainer.max_steps", "2")
    paths = photo_folder(tmp_path / "mine", 7)
    out = tmp_path / "translated"
    extra = ["--data.init_args.predict_root", str(tmp_path / "mine")]
    extra += ["--data.init_args.predict_image_size", "64", "--export.format", "png"]
    extra += ["--export.size", "64"]  # PNGs at the size translated: exact up to rounding
    args = small(CYCLEGAN, kaggle_dir, tmp_path, "--ckpt_path", "last", *extra)
    cli = cli_main(["predict", *args, "--export.output", str(out), *shrink_nets(CYCLEGAN)])
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [f"p{i:02d}.png" for i in range(7)]  # named as the photos
    model = cli.model.eval()
    for path, image in zip(paths, written, strict=True):
        photo = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        expected = model.generate(to_unit(resize_square(photo, 64))[None])
        got = to_unit(torch.from_numpy(np.array(Image.open(image))).permute(2, 0, 1))
        assert (got - expected).abs().max() <= 1 / 127.5, path.name  # its own photo


def test_predict_writes_a_complete_kaggle_submission(kaggle_dir, tmp_path):
    run_fit(kaggle_dir, tmp_path, "--trainer.max_steps", "2")
    photos = tmp_path / "photos"  # 7,000 small photos in one TFRecord, as Kaggle ships them
    items = [(f"photo{i}", jpeg_bytes(a)) for i, a in enumerate(random_images(7000, 8, seed=2))]
    write_tfrecord(photos / "photo_tfrec" / "photo00-7000.tfrec", items)
    zip_path = tmp_path / "images.zip"
    extra = ["--data.init_args.predict_root", str(photos)]
    extra += ["--data.init_args.predict_image_size", "32", "--data.batch_size", "500"]
    args = small(CYCLEGAN, kaggle_dir, tmp_path, "--ckpt_path", "last", *extra)
    cli_main(["predict", *args, "--export.output", str(zip_path), *shrink_nets(CYCLEGAN)])
    assert check_submission(zip_path) == 7000
    report = json.loads((tmp_path / "images.memorization.json").read_text())
    assert report["near_copy_share"] == 0.0


def test_a_cyclegan_needs_photos(kaggle_dir, tmp_path):
    model = CycleGAN(ResnetGenerator(4, 1, image_size=32), PatchDiscriminator(4, image_size=32))
    with pytest.raises(ConfigError, match="UnpairedDataModule"):
        model.sample_inputs(2)
    with pytest.raises(ConfigError, match="pool_size=-1"):
        CycleGAN(model.generator, model.critic, pool_size=-1)
    assert not torch.equal(model.inverse.net[1].weight, model.generator.net[1].weight)
