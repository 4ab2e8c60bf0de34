"""`python -m monet predict`: images from a checkpoint of each family, and the Kaggle zip."""

from __future__ import annotations

import zipfile

import pytest
import torch
from conftest import ROOT, shrink_nets, small
from PIL import Image

from monet.__main__ import cli_main

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
    assert (tmp_path / "images.memorization.json").is_file()
