"""Every source (folder, zip, file list) and format, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import jpeg_bytes, make_kaggle_zip, random_images, write_tfrecord

from monet.data.sources import decode_rgb, find_files, read_images
from monet.errors import DataError


def load(files) -> tuple[list[str], list[torch.Tensor]]:
    out = [item for f in files for item in read_images(f)]
    return [n for n, _ in out], [t for _, t in out]


@pytest.mark.parametrize(
    "fmt,kind,count", [("auto", "tfrecord", 2), ("tfrecord", "tfrecord", 2), ("jpg", "image", 12)]
)
def test_kaggle_folder_formats(kaggle_dir, fmt, kind, count):
    files = find_files(kaggle_dir, "monet", fmt)
    assert len(files) == count and {f.kind for f in files} == {kind}
    names, images = load(files)
    assert sorted(names) == [f"monet{i:03d}" for i in range(12)]
    assert all(t.shape == (3, 48, 48) and t.dtype == torch.uint8 for t in images)


def test_tfrecord_and_jpg_hold_the_same_images(kaggle_dir):
    tf = dict(zip(*load(find_files(kaggle_dir, "monet", "tfrecord"))))
    jpg = dict(zip(*load(find_files(kaggle_dir, "monet", "jpg"))))
    assert tf.keys() == jpg.keys()
    assert all(torch.equal(tf[k], jpg[k]) for k in tf)


def test_photo_domain(kaggle_dir):
    names, _ = load(find_files(kaggle_dir, "photo"))
    assert sorted(names) == [f"photo{i:03d}" for i in range(5)]


def test_auto_falls_back_to_jpg(kaggle_dir):
    for f in (kaggle_dir / "monet_tfrec").iterdir():
        f.unlink()
    assert {f.kind for f in find_files(kaggle_dir, "monet")} == {"image"}


@pytest.mark.parametrize("fmt", ["tfrecord", "jpg"])
def test_kaggle_zip(kaggle_dir, tmp_path, fmt):
    archive = make_kaggle_zip(kaggle_dir, tmp_path / "gan-getting-started.zip")
    files = find_files(archive, "monet", fmt)
    assert all(f.name.startswith(f"{archive}:monet_") for f in files)
    names, images = load(files)
    assert len(names) == 12 and images[0].shape == (3, 48, 48)


def test_explicit_file_list(kaggle_dir):
    tfrecs = sorted(str(p) for p in (kaggle_dir / "monet_tfrec").glob("*.tfrec"))
    assert len(load(find_files(None, files=tfrecs[:1]))[0]) == 6
    jpgs = sorted(str(p) for p in (kaggle_dir / "monet_jpg").glob("*.jpg"))[:3]
    assert load(find_files(None, files=jpgs))[0] == ["monet000", "monet001", "monet002"]


def test_folder_of_loose_tfrecords(kaggle_dir):
    names, _ = load(find_files(kaggle_dir / "monet_tfrec"))
    assert len(names) == 12


@pytest.mark.parametrize(
    "mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("RGB", "BMP")]
)
def test_other_colour_modes_become_rgb(mode, fmt):
    array = random_images(1, 40)[0]
    image = decode_rgb(jpeg_bytes(array, mode, fmt), "x", "x")
    assert image.shape == (3, 40, 40) and image.dtype == torch.uint8
    if mode == "L":  # grey in, equal channels out
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


# -- bad input ------------------------------------------------------------------------------------
def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*kaggle competitions download"):
        find_files(tmp_path / "nowhere")


def test_no_matching_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty.*monet_tfrec/\*\.tfrec or monet_jpg/\*\.jpg"):
        find_files(tmp_path / "empty")


def test_missing_listed_file(tmp_path):
    with pytest.raises(DataError, match=r"gone\.tfrec does not exist"):
        find_files(None, files=[str(tmp_path / "gone.tfrec")])


def test_not_a_zip(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"data\.zip is a file but not a zip"):
        find_files(tmp_path / "data.zip")


def _records(tmp_path, n=3):
    items = [(f"img{i}", jpeg_bytes(a)) for i, a in enumerate(random_images(n, 32))]
    return write_tfrecord(tmp_path / "x.tfrec", items)


def test_truncated_tfrecord_names_file_and_record(tmp_path):
    path = _records(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])  # cut into the last record
    files = find_files(None, files=[str(path)])
    with pytest.raises(DataError, match=r"x\.tfrec: record 2 is truncated"):
        load(files)


def test_corrupt_tfrecord_names_file_and_record(tmp_path):
    path = _records(tmp_path)
    data = bytearray(path.read_bytes())
    first = int.from_bytes(data[:8], "little")
    data[16 + first + 12 + 200] ^= 0xFF  # a byte inside record 1's payload
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"x\.tfrec: record 1 has a bad data CRC"):
        load(find_files(None, files=[str(path)]))


def test_corrupt_length_header(tmp_path):
    path = _records(tmp_path)
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"record 0 has a bad length CRC"):
        load(find_files(None, files=[str(path)]))


def test_undecodable_image_names_file_and_image(tmp_path):
    good = jpeg_bytes(random_images(1, 32)[0])
    path = write_tfrecord(
        tmp_path / "y.tfrec", [("fine", good), ("broken", b"\xff\xd8" + b"x" * 50)]
    )
    with pytest.raises(DataError, match=r"y\.tfrec \(record 1\): image 'broken' could not be"):
        load(find_files(None, files=[str(path)]))
    bad_jpg = tmp_path / "bad.jpg"
    bad_jpg.write_bytes(b"garbage" * 20)
    with pytest.raises(DataError, match=r"bad\.jpg: image 'bad\.jpg' could not be decoded"):
        load(find_files(None, files=[str(bad_jpg)]))


def test_record_without_image_feature(tmp_path):
    from tfrecord import TFRecordWriter

    writer = TFRecordWriter(str(tmp_path / "z.tfrec"))
    writer.write({"image_name": (b"a", "byte")})
    writer.close()
    with pytest.raises(DataError, match=r"z\.tfrec: record 0 has no bytes feature 'image'"):
        load(find_files(None, files=[str(tmp_path / "z.tfrec")]))


def test_real_shared_data(shared_data):
    names, images = load(find_files(shared_data, "monet"))
    assert len(names) == 300 and len(set(names)) == 300
    assert all(t.shape == (3, 256, 256) for t in images)
    assert np.mean([t.float().mean().item() for t in images]) > 50
