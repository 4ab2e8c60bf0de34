"""Every source (folder, zip, file list) and format, and every kind of bad input."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from support import HOLIDAY, holiday, jpeg_bytes, make_kaggle_zip, random_images, write_tfrecord

from monet.data import sources
from monet.data.sources import HEIF, decode_rgb, find_files, read_images
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
    with pytest.raises(DataError, match=r"data\.zip is neither a folder, a zip archive, an"):
        find_files(tmp_path / "data.zip")


def test_one_photo_is_a_root_of_its_own(tmp_path):
    holiday(tmp_path / "holiday")
    photo = tmp_path / "holiday" / "beach" / "IMG_0003.jpg"
    (file,) = find_files(photo, "photo")
    assert file.relative == "IMG_0003.jpg" and file.kind == "image"
    assert load([file])[1][0].shape == (3, 24, 24)


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


# -- photos as users have them ---------------------------------------------------------------------
def encoded(image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, or RGB for (H, W, 3)), written by hand: PIL saves only 16-bit grey."""
    h, w = array.shape[:2]
    colour = {2: 0, 3: 2}[array.ndim]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    )


@pytest.mark.parametrize("orientation,turns", [(3, 2), (6, 1), (8, -1)])
def test_a_sideways_phone_jpeg_is_decoded_upright(orientation, turns):
    upright = random_images(1, 48)[0][:, :32]  # 48 high, 32 wide: a portrait photo
    stored = np.ascontiguousarray(np.rot90(upright, turns))  # the camera's pixels, turned
    exif = Image.Exif()
    exif[0x0112] = orientation  # how a viewer turns them back
    data = encoded(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())
    image = decode_rgb(data, "IMG_0001.jpg", "IMG_0001.jpg")
    expected = decode_rgb(encoded(Image.fromarray(upright), "JPEG", quality=95), "up", "up")
    assert image.shape == expected.shape == (3, 48, 32)
    assert (image.float() - expected.float()).abs().mean() < 2  # the same picture, re-encoded


def test_16_bit_pngs_and_tiffs_are_scaled_to_8_bits():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    want = (rgb / 257).round()
    assert (decode_rgb(png16(rgb), "x", "x.png").double() - as_tensor(want)).abs().max() <= 1
    grey = rgb[..., 0]
    for data in (png16(grey), encoded(Image.fromarray(grey), "TIFF")):
        image = decode_rgb(data, "x", "x")
        assert image.dtype == torch.uint8 and image.shape == (3, 20, 30)
        assert (image[1].double() - torch.from_numpy(want[..., 0])).abs().max() <= 1


def test_transparency_is_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent
    rgba[4:6, :, 3] = 128  # half transparent
    image = decode_rgb(encoded(Image.fromarray(rgba, "RGBA"), "PNG"), "x", "x")
    assert image[:, 0, 0].tolist() == [200, 0, 0]
    assert image[:, 7, 0].tolist() == [255, 255, 255]
    assert (image[:, 4, 0] - torch.tensor([228, 127, 127])).abs().max() <= 1  # 50% red on white
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    palette.putpalette([0, 0, 255, 10, 200, 10] + [0] * 762)
    data = encoded(palette, "PNG", transparency=0)  # palette entry 0 is transparent
    image = decode_rgb(data, "x", "x")
    assert image[:, 0, 0].tolist() == [255, 255, 255] and image[:, 0, 1].tolist() == [10, 200, 10]


def test_an_animation_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((250, 0, 0), (0, 0, 250))]
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], lossless=True)
        image = decode_rgb(buf.getvalue(), "x", f"x.{fmt.lower()}")
        assert image.shape == (3, 16, 16) and image[0].float().mean() > 200 > image[2].max()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF", "WEBP", "TIFF", "PPM", "TGA"])
def test_every_format_pil_reads(fmt):
    if fmt == "HEIF" and not HEIF:
        pytest.skip("pillow-heif has no wheel for this platform")
    array = random_images(1, 64)[0]
    image = decode_rgb(encoded(Image.fromarray(array), fmt, quality=95), "x", "x")
    assert (image.float() - as_tensor(array).float()).abs().mean() < 4


def test_a_heic_without_its_plugin_names_the_file_and_the_fix(monkeypatch):
    if not HEIF:
        pytest.skip("pillow-heif has no wheel for this platform")
    data = encoded(Image.fromarray(random_images(1, 16)[0]), "HEIF")
    monkeypatch.setattr(sources, "HEIF", False)
    monkeypatch.setattr(Image, "OPEN", {k: v for k, v in Image.OPEN.items() if "HEIF" not in k})
    with pytest.raises(DataError, match=r"IMG_0004\.HEIC.*pip install pillow-heif.*JPEG\.$"):
        decode_rgb(data, "holiday/IMG_0004.HEIC", "IMG_0004.HEIC")


def test_a_folder_is_read_at_any_depth_in_path_order(tmp_path, capsys):
    files = find_files(holiday(tmp_path / "holiday"), "photo")
    assert [f.relative for f in files] == HOLIDAY
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("skipped 2 files that are not images: beach/video.mov, notes.txt")
    )
    assert len(load(files)[1]) == 4


def test_a_zipped_folder_is_read_as_the_folder(tmp_path, capsys):
    folder = holiday(tmp_path / "holiday")
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # what "compress folder" makes, with macOS forks
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(tmp_path).as_posix())
        zf.writestr("__MACOSX/holiday/beach/._IMG_0003.jpg", b"\0\5\26\7")
    files = find_files(archive, "photo")
    assert [f.relative for f in files] == HOLIDAY
    assert files[1].name == f"{archive}:holiday/beach/IMG_0003.jpg"
    assert "skipped 2 files that are not images" in capsys.readouterr().err
    assert torch.equal(load(files)[1][3], load(find_files(folder, "photo"))[1][3])


def test_zip_members_that_climb_out_are_skipped_and_counted(tmp_path, capsys):
    archive = tmp_path / "holiday.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for relative in HOLIDAY:
            zf.writestr(f"holiday/{relative}", jpeg_bytes(random_images(1, 24)[0]))
        zf.writestr("../x.jpg", jpeg_bytes(random_images(1, 24)[0]))
        zf.writestr("holiday/notes.txt", "where we went")
    files = find_files(archive, "photo")
    assert [f.relative for f in files] == HOLIDAY  # read as the folder it holds
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "skipped 2 files that are not images or lie outside the archive: ../x.jpg, notes.txt"
        )
    )


def test_outputs_below_the_root_are_left_out(tmp_path, capsys):
    folder = holiday(tmp_path / "holiday")
    (folder / "painted" / "beach").mkdir(parents=True)  # a previous run's paintings
    (folder / "painted" / "beach" / "IMG_0003.png").write_bytes(jpeg_bytes(random_images(1)[0]))
    (folder / "images.zip").write_bytes(b"a submission")
    files = find_files(folder, "photo", exclude=(folder / "painted", folder / "images.zip"))
    assert [f.relative for f in files] == HOLIDAY
    assert "images.zip" not in capsys.readouterr().err


def test_a_damaged_photo_deep_in_a_folder_stops_the_run_naming_it(tmp_path):
    folder = holiday(tmp_path / "holiday")
    (folder / "city" / "2024" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DataError, match=r"holiday/city/2024/broken\.jpg: image 'broken\.jpg'"):
        load(find_files(folder, "photo"))
