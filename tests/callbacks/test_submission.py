"""The Kaggle submission writer and checker: zip format, validation before writing, atomic
writes, the memorization report beside the zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from monet.callbacks.submission import check_submission, write_submission
from monet.errors import DataError

SMALL = (5, 12)  # a small count range, so most tests write a handful of images


def images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth colour images in [-1, 1] (JPEG keeps them close to the originals)."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=size, mode="bicubic")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_zip_holds_256px_rgb_jpegs_close_to_the_images(tmp_path):
    x = images(7, 32)
    x[0, 0] = 1.0  # a pure red-ish first image: catches swapped channels
    x[0, 1:] = -1.0
    out = write_submission(x, tmp_path / "images.zip", count_range=SMALL)
    assert out.count == 7 and out.path == tmp_path / "images.zip" and out.report is None
    assert leftovers(tmp_path) == ["images.zip"]
    with zipfile.ZipFile(out.path) as zf:
        names = zf.namelist()
        assert names == [f"{i}.jpg" for i in range(7)]
        decoded = []
        for name in names:
            with Image.open(io.BytesIO(zf.read(name))) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (256, 256))
                decoded.append(np.asarray(im, dtype=np.float32) / 127.5 - 1)
    assert decoded[0][..., 0].mean() > 0.9 and decoded[0][..., 1:].mean() < -0.9
    # Upsampled bicubic, then JPEG: close to the same upsampling of the source.
    ref = F.interpolate(x, size=256, mode="bicubic").clamp(-1, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(np.stack(decoded) - ref).mean() < 0.03
    assert check_submission(out.path, count_range=SMALL) == 7


def test_streamed_batches_and_uint8_and_larger_images(tmp_path):
    large = (images(3, 512, 1) * 127.5 + 127.5).round().clamp(0, 255).byte()
    batches = iter([images(3, 64), large])
    out = write_submission(batches, tmp_path / "sub.zip", count_range=SMALL)
    assert out.count == 6
    assert check_submission(tmp_path / "sub.zip", count_range=SMALL) == 6


def test_wrong_count_is_rejected_before_writing(tmp_path):
    consumed = []

    def gen():
        consumed.append(1)
        yield images(2)

    with pytest.raises(DataError, match="10 images, but .* between 7,000 and 10,000"):
        write_submission(images(10), tmp_path / "images.zip")  # the real Kaggle bounds
    with pytest.raises(DataError, match="count=100.*100 images, but .* between 7,000"):
        write_submission(gen(), tmp_path / "images.zip", count=100)
    assert consumed == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "batches, count, message",
    [
        ([images(3), images(1)], None, "4 images, but the Kaggle submission needs between 5 and"),
        ([images(8), images(8)], None, "more than 12 images arrived"),
        ([images(6), images(1)], 6, "more than 6 images arrived"),
        ([images(3), images(3)], 7, "count=7 but 6 images arrived"),
    ],
)
def test_wrong_streamed_count_leaves_no_zip_and_keeps_the_old_one(
    tmp_path, batches, count, message
):
    target = tmp_path / "images.zip"
    target.write_bytes(b"previous submission")
    with pytest.raises(DataError, match=message):
        write_submission(iter(batches), target, count=count, count_range=SMALL)
    assert target.read_bytes() == b"previous submission"
    assert leftovers(tmp_path) == ["images.zip"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (images(6)[:, :1], "3 channels"),
        (images(6)[..., :30], "32x30 images"),
        (images(6) * 255, r"expected floats in \[-1, 1\]"),
        (images(6).fill_(float("nan")), "NaN"),
    ],
)
def test_wrong_images_are_rejected(tmp_path, bad, message):
    with pytest.raises(DataError, match=message):
        write_submission(bad, tmp_path / "images.zip", count_range=SMALL)
    assert leftovers(tmp_path) == []


def test_a_failing_generator_leaves_nothing(tmp_path):
    def gen():
        yield images(4)
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        write_submission(gen(), tmp_path / "images.zip", count_range=SMALL)
    assert leftovers(tmp_path) == []


def test_memorization_report_beside_the_zip(tmp_path):
    training = images(20, 64, seed=3)
    generated = torch.cat([images(5, 32, seed=4), F.interpolate(training[2:3], size=32)])
    out = write_submission(generated, tmp_path / "images.zip", training=training, count_range=SMALL)
    assert out.report_path == tmp_path / "images.memorization.json"
    report = json.loads(out.report_path.read_text())
    assert report["near_copy_indices"] == [5] and report["num_training"] == 20
    assert report["per_image"]["nearest_training_index"][5] == 2
    assert out.report.near_copy_share == pytest.approx(1 / 6)
    assert leftovers(tmp_path) == ["images.memorization.json", "images.zip"]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _encoded(fmt: str = "JPEG", size: int = 256, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), 128).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "entries, message",
    [
        ({f"{i}.jpg": _encoded() for i in range(4)}, "4 images, but Kaggle needs between 5"),
        ({**{f"{i}.jpg": _encoded() for i in range(5)}, "5.jpg": _encoded("PNG")}, "PNG, not"),
        ({**{f"{i}.jpg": _encoded() for i in range(5)}, "5.jpg": _encoded(size=64)}, "64x64"),
        ({**{f"{i}.jpg": _encoded() for i in range(5)}, "5.jpg": _encoded(mode="L")}, "mode L"),
        ({**{f"{i}.jpg": _encoded() for i in range(5)}, "5.jpg": _encoded()[:600]}, "5.jpg: unr"),
        ({**{f"{i}.jpg": _encoded() for i in range(5)}, "notes.txt": b"hi"}, "not a .jpg"),
    ],
)
def test_check_submission_finds_format_errors(tmp_path, entries, message):
    path = _zip(tmp_path / "images.zip", entries)
    with pytest.raises(DataError, match=message):
        check_submission(path, count_range=SMALL)


def test_check_submission_on_a_non_zip(tmp_path):
    (tmp_path / "images.zip").write_bytes(b"oops")
    with pytest.raises(DataError, match="not a zip file"):
        check_submission(tmp_path / "images.zip")
