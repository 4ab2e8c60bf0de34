"""`python -m monet predict`: images from a checkpoint of each family, and the Kaggle zip; a
CycleGAN's paintings of your own photos (one per photo, in order, under its name) and of Kaggle's
7,000."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import (
    CYCLEGAN,
    HOLIDAY,
    ROOT,
    holiday,
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
from monet.data.augment import resize_square
from monet.images import to_unit

FAMILIES = {
    "wgan_gp": [],
    "dcgan_diffaug": [],
    "ddpm_lib": ["--model.init_args.sampling_steps", "2"],
}


def train(name: str, data, out) -> None:
    config = ROOT / "configs" / f"{name}.yaml"
    cli_main(
        [
            "fit",
            *small(config, data, out, "--trainer.max_steps", "3"),
            *shrink_nets(config),
            *FAMILIES[name],
        ]
    )


def predict(name: str, data, out, *extra: str):
    config = ROOT / "configs" / f"{name}.yaml"
    args = small(
        config, data, out, "--ckpt_path", "last", *shrink_nets(config), *FAMILIES[name], *extra
    )
    return cli_main(["predict", *args])


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_predict_from_a_checkpoint_of_each_family(name, kaggle_dir, tmp_path):
    train(name, kaggle_dir, tmp_path)
    six = ["--data.predict_size", "6", "--export.size", "64"]
    jpgs = tmp_path / "jpg"
    predict(
        name, kaggle_dir, tmp_path, *six, "--export.output", str(jpgs), "--export.format", "jpg"
    )
    files = sorted(jpgs.glob("*.jpg"))
    assert [f.name for f in files] == [f"{i:05d}.jpg" for i in range(6)]
    assert Image.open(files[0]).size == (64, 64)
    # image i comes from seed i: the same images whatever the batch size
    pngs = []
    for batch in ("4", "3"):
        out = tmp_path / f"png{batch}"
        predict(
            name,
            kaggle_dir,
            tmp_path,
            *six,
            "--data.batch_size",
            batch,
            "--export.output",
            str(out),
            "--trainer.precision",  # exact: bf16 on a CPU with bf16 units rounds per batch
            "32-true",
        )
        pngs.append(torch.tensor(list(Image.open(out / "00004.png").getdata())))
    assert (pngs[0] - pngs[1]).abs().max() <= 1  # batched matmuls may round differently


@pytest.mark.slow
def test_kaggle_zip_with_7000_images_from_a_wgan_checkpoint(kaggle_dir, tmp_path):
    train("wgan_gp", kaggle_dir, tmp_path)
    zip_path = tmp_path / "images.zip"
    predict(
        "wgan_gp",
        kaggle_dir,
        tmp_path,
        "--data.predict_size",
        "7000",
        "--data.batch_size",
        "500",
        "--export.output",
        str(zip_path),
    )
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert len(names) == 7000 and all(n.endswith(".jpg") for n in names)
        with zf.open(names[0]) as f:
            image = Image.open(f)
            assert image.size == (256, 256) and image.format == "JPEG" and image.mode == "RGB"
    assert check_submission(zip_path) == 7000  # Kaggle's bounds, written 500 at a time
    assert (tmp_path / "images.memorization.json").is_file()
    assert not list(tmp_path.glob(".images.zip.*.partial"))  # no temporary file left


# -- your own photos: names, refusals -------------------------------------------------------------


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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def cyclegan_checkpoint(tmp_path_factory) -> tuple[Path, Path]:
    """The data and last.ckpt of a one-step CycleGAN run."""
    root = tmp_path_factory.mktemp("cyclegan")
    data = make_kaggle_dir(root / "data")
    args = small(CYCLEGAN, data, root, "--trainer.max_steps", "1", "--metrics.inception", "false")
    cli_main(["fit", *args, *shrink_nets(CYCLEGAN)])
    (ckpt,) = root.rglob("last.ckpt")
    return data, ckpt


def translate(data: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    size = ["--data.init_args.predict_image_size", "32", "--export.size", "32"]
    args = small(CYCLEGAN, data, out.parent, "--ckpt_path", str(ckpt), *size, *extra)
    return ["predict", *args, "--export.output", str(out), *shrink_nets(CYCLEGAN)]


def test_a_zipped_folder_of_photos_is_translated_under_their_own_names(
    cyclegan_checkpoint, tmp_path, capsys, monkeypatch
):
    data, ckpt = cyclegan_checkpoint
    folder = holiday(tmp_path / "holiday")
    archive = tmp_path / "holiday.zip"  # what a file manager's "compress folder" makes
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(tmp_path).as_posix())
    out = tmp_path / "painted"
    args = translate(data, ckpt, out, "--data.init_args.predict_root", str(archive))
    cli_main(args)
    assert (
        "skipped 2 files that are not images: beach/video.mov, notes.txt" in capsys.readouterr().err
    )
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(str(Path(name).with_suffix(".png")) for name in HOLIDAY)
    assert Image.open(out / "beach" / "IMG_0003.png").size == (32, 32)
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    # the same command again would replace them: refused, nothing touched
    line = one_line_error(args, capsys, monkeypatch)
    assert line == (
        f"monet: error: --export.output {out} already holds 4 of the 4 files to write "
        "(IMG_0001.png, beach/IMG_0003.png, beach/IMG_0010.png, ...); choose another "
        "--export.output, or add --export.overwrite true to replace them."
    )
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before


def test_outputs_that_cannot_be_written_are_refused_in_one_line(
    cyclegan_checkpoint, tmp_path, capsys, monkeypatch
):
    data, ckpt = cyclegan_checkpoint
    taken = tmp_path / "painting.png"
    taken.write_bytes(b"a painting of mine")
    line = one_line_error(translate(data, ckpt, taken), capsys, monkeypatch)
    assert line == (
        f"monet: error: --export.output {taken} is a file, not a folder; choose another "
        "--export.output: a folder (created if missing) or a path ending in .zip."
    )
    assert taken.read_bytes() == b"a painting of mine"
    wgan = ROOT / "configs" / "wgan_gp.yaml"
    args = small(wgan, data, tmp_path, "--data.predict_size", "0", *shrink_nets(wgan))
    line = one_line_error(["predict", *args], capsys, monkeypatch)
    assert line.startswith("monet: error: data.predict_size=0 asks for no images")


@pytest.mark.parametrize("subcommand", ["fit", "predict"])
def test_a_cyclegan_checkpoint_with_a_gan_config_is_refused_in_one_line(
    subcommand, cyclegan_checkpoint, tmp_path, capsys, monkeypatch
):
    data, ckpt = cyclegan_checkpoint
    wgan = ROOT / "configs" / "wgan_gp.yaml"
    args = small(wgan, data, tmp_path, "--ckpt_path", str(ckpt), *shrink_nets(wgan))
    line = one_line_error([subcommand, *args], capsys, monkeypatch)
    assert line.startswith(
        f"monet: error: {ckpt} holds a CycleGAN (ResnetGenerator, 32 px); {wgan} builds a GAN "
        "(WGANGenerator, 32 px). Use the config"
    )


@pytest.mark.slow
def test_sigterm_stops_diffusion_predict_between_two_steps_with_whole_files(kaggle_dir, tmp_path):
    """A cluster's time limit (SIGTERM) during a long diffusion predict: the run stops within
    seconds, exits 143, every file it wrote decodes, and it says how many there are."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    config = ROOT / "configs" / "ddpm_small.yaml"
    args = small(config, kaggle_dir, tmp_path, "--data.image_size", "16", *shrink_nets(config))
    args += ["--model.init_args.denoiser.init_args.dim_mults", "[1, 2]"]
    args += ["--model.init_args.sampling_steps", "100", "--model.init_args.sample_batch_size", "4"]
    args += ["--data.batch_size", "4", "--data.predict_size", "400", "--export.output", str(out)]
    args += ["--export.report_seconds", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "monet", "predict", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.png")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    assert "monet: sampling stopped by a signal at step" in err or "monet: predict stopped" in err
    files = sorted(out.glob("*.png"))
    assert 0 < len(files) < 400, err[-3000:]
    assert f"stopped after {len(files)} of 400 images" in err
    for f in files:
        Image.open(f).load()  # whole files only


def test_an_output_inside_the_photos_is_never_read_back_as_photos(
    cyclegan_checkpoint, tmp_path, capsys, monkeypatch
):
    data, ckpt = cyclegan_checkpoint
    album = holiday(tmp_path / "album")
    out = album / "painted"
    args = translate(data, ckpt, out, "--data.init_args.predict_root", str(album))
    cli_main(args)
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert first == sorted(str(Path(name).with_suffix(".png")) for name in HOLIDAY)
    cli_main([*args, "--export.overwrite", "true"])  # the next run: the same four, no painted/
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == first
    assert "painted" not in capsys.readouterr().err


def test_one_photo_is_translated_on_its_own(cyclegan_checkpoint, tmp_path):
    data, ckpt = cyclegan_checkpoint
    photo = holiday(tmp_path / "holiday") / "beach" / "IMG_0003.jpg"
    out = tmp_path / "painted"
    cli_main(translate(data, ckpt, out, "--data.init_args.predict_root", str(photo)))
    assert [p.name for p in out.iterdir()] == ["IMG_0003.png"]


def test_a_kaggle_zip_of_a_few_photos_is_refused_before_the_first_image(
    cyclegan_checkpoint, tmp_path, capsys, monkeypatch
):
    data, ckpt = cyclegan_checkpoint
    folder = holiday(tmp_path / "holiday")
    zip_path = tmp_path / "images.zip"
    extra = ["--data.init_args.predict_root", str(folder), "--export.size", "256"]
    line = one_line_error(translate(data, ckpt, zip_path, *extra), capsys, monkeypatch)
    assert line == (
        f"monet: error: --export.output {zip_path}: a Kaggle submission holds 7,000-10,000 "
        "images, and this predict makes 4; generate 7,000 (--data.predict_size 7000) or "
        "translate that many photos, or export to a folder instead."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday"]  # nothing written
