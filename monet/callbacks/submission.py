"""The Kaggle submission: `images.zip` of 7,000-10,000 JPEGs of 256x256 RGB.

"I'm Something of a Painter Myself" scores a zip of 7,000 to 10,000 256x256 RGB JPEG images with
MiFID. `write_submission` streams batches of generated images into such a zip (resizing others
with `monet.images.resize`, as `ImageExport` does a folder's), checks the format as it goes and
before the file appears, and never leaves a half written zip behind; `check_submission` re-opens
a zip and verifies it.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from monet.errors import DataError
from monet.images import resize, to_uint8, to_unit
from monet.metrics.memorization import (
    EMBED_SIZE,
    NEAR_COPY_THRESHOLD,
    MemorizationReport,
    memorization_report,
)

KAGGLE_COUNT = (7000, 10000)
KAGGLE_SIZE = 256


@dataclass
class Submission:
    """What `write_submission` wrote."""

    path: Path
    count: int
    report: MemorizationReport | None = None
    report_path: Path | None = None


def _check_count(n: int, count_range: tuple[int, int], what: str) -> None:
    lo, hi = count_range
    if not lo <= n <= hi:
        raise DataError(
            f"{what}: {n} images, but the Kaggle submission needs between {lo:,} and {hi:,}. "
            f"Generate between {lo:,} and {hi:,} images."
        )


def _checked_uint8(batch: Tensor, index: int) -> Tensor:
    """(B, 3, H, W) floats in [-1, 1] or uint8 -> uint8 on the CPU, with format checks."""
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise DataError(
            f"batch {index}: shape {tuple(batch.shape)}; expected (B, 3, H, W) RGB images "
            "(the submission needs 3 channels)."
        )
    if batch.shape[-1] != batch.shape[-2]:
        raise DataError(
            f"batch {index}: {batch.shape[-2]}x{batch.shape[-1]} images; the submission needs "
            "square 256x256 images and a non-square image would be distorted. Crop first."
        )
    batch = batch.detach().cpu()
    if batch.dtype != torch.uint8:
        batch = batch.float()
        if not torch.isfinite(batch).all():
            raise DataError(f"batch {index}: NaN or inf values; the generator may have diverged.")
        if batch.abs().amax() > 5:
            raise DataError(
                f"batch {index}: values up to {batch.abs().amax():.3g}; expected floats in "
                "[-1, 1] (or a uint8 tensor in [0, 255])."
            )
        batch = to_uint8(batch)
    return batch


def _hwc_arrays(images: Tensor, size: int) -> np.ndarray:
    """uint8 (B, 3, s, s) -> (B, size, size, 3) uint8, through the export's one resize."""
    return resize(images, size).permute(0, 2, 3, 1).contiguous().numpy()


def _encode(array: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_submission(
    images: Tensor | Iterable[Tensor],
    path: str | os.PathLike = "images.zip",
    *,
    count: int | None = None,
    quality: int = 95,
    training: Tensor | Iterable[Tensor] | None = None,
    report_path: str | os.PathLike | None = None,
    threshold: float = NEAR_COPY_THRESHOLD,
    count_range: tuple[int, int] = KAGGLE_COUNT,
    size: int = KAGGLE_SIZE,
    workers: int | None = None,
    progress: bool = False,
) -> Submission:
    """Write generated images as `0.jpg` ... `{N-1}.jpg` (256x256 RGB JPEG) into a zip.

    `images` is a (N, 3, H, W) tensor or an iterable of such batches, floats in [-1, 1] or
    uint8; square images of another size are resized (`monet.images.resize`: bicubic,
    antialiased). The number of images must lie in
    `count_range` (Kaggle: 7,000-10,000): a tensor, or an iterator with `count` given, is checked
    before anything is written; otherwise the count is checked before the zip is moved into
    place. The zip is written to a temporary file beside `path` and renamed at the end, so a
    failure leaves no partial zip. With `training` images, a memorization report
    (`memorization_report`) is computed and written as JSON to `report_path` (default:
    `<zip stem>.memorization.json` beside the zip).
    """
    path = Path(path)
    images, count = _checked_inputs(images, path, count, quality, count_range)
    if training is not None and report_path is None:
        report_path = path.with_name(f"{path.stem}.memorization.json")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        n, small = _write_zip(
            tmp, images, path, count, quality, count_range, size, workers, progress,
            keep_small=training is not None,
        )  # fmt: skip
        _check_count(n, count_range, f"write_submission({path})")
        if count is not None and n != count:
            raise DataError(f"write_submission({path}): count={count} but {n} images arrived.")
        report = None
        if training is not None:
            report = memorization_report(torch.cat(small), training, threshold)
            report.save_json(report_path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Submission(path, n, report, Path(report_path) if report is not None else None)


def _checked_inputs(
    images: Tensor | Iterable[Tensor],
    path: Path,
    count: int | None,
    quality: int,
    count_range: tuple[int, int],
) -> tuple[Iterable[Tensor], int | None]:
    """write_submission's checks before anything is written: the images as batches, their count."""
    if isinstance(images, Tensor):
        _check_count(len(images), count_range, f"write_submission({path})")
        if count is not None and count != len(images):
            raise DataError(f"count={count} but the tensor holds {len(images)} images.")
        count = len(images)
        images = images.split(64)  # resized 64 at a time: 12 MB at 256 px
    elif count is not None:
        _check_count(count, count_range, f"write_submission({path}, count={count})")
    if not 1 <= quality <= 100:
        raise DataError(f"quality={quality}: JPEG quality must be in 1..100 (Kaggle: any; 95).")
    if not path.parent.is_dir():
        raise DataError(f"{path.parent}: no such folder for the submission zip; create it first.")
    return images, count


def _write_zip(
    tmp: Path,
    images: Iterable[Tensor],
    path: Path,
    count: int | None,
    quality: int,
    count_range: tuple[int, int],
    size: int,
    workers: int | None,
    progress: bool,
    keep_small: bool,
) -> tuple[int, list[Tensor]]:
    """The JPEGs into `tmp`: how many, and EMBED_SIZE px copies when `keep_small`."""
    hi = count_range[1]
    small: list[Tensor] = []
    n = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="img", desc=f"writing {path.name}")
    try:
        with (
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf,
            ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool,
        ):
            for index, batch in enumerate(images):
                batch = _checked_uint8(batch, index)
                if n + len(batch) > hi or (count is not None and n + len(batch) > count):
                    limit = hi if count is None else min(count, hi)
                    raise DataError(
                        f"write_submission({path}): more than {limit:,} images arrived "
                        f"(count={count}, Kaggle maximum {hi:,}); stop the iterator earlier."
                    )
                if keep_small:
                    small.append(F.adaptive_avg_pool2d(to_unit(batch), EMBED_SIZE))
                arrays = _hwc_arrays(batch, size)
                # JPEG encoding (in PIL's C code, outside the GIL) runs on several threads.
                for data in pool.map(lambda a: _encode(a, quality), arrays):
                    zf.writestr(f"{n}.jpg", data)
                    n += 1
                if bar is not None:
                    bar.update(len(arrays))
    finally:
        if bar is not None:
            bar.close()
    return n, small


def check_submission(
    path: str | os.PathLike,
    *,
    count_range: tuple[int, int] = KAGGLE_COUNT,
    size: int = KAGGLE_SIZE,
    decode: bool = True,
) -> int:
    """Re-open a submission zip and verify it: count, JPEG format, RGB, size; the image count.

    With `decode`, every image is fully decoded, so a truncated JPEG is caught too. Raises
    DataError listing the first problems found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise DataError(f"{path}: not a zip file ({err}); write it again.") from err
    problems: list[str] = []
    with zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        for name in names:
            if not name.lower().endswith((".jpg", ".jpeg")):
                problems.append(f"{name}: not a .jpg file")
                continue
            try:
                with Image.open(io.BytesIO(zf.read(name))) as image:
                    if image.format != "JPEG":
                        problems.append(f"{name}: {image.format}, not JPEG")
                    elif image.mode != "RGB":
                        problems.append(f"{name}: mode {image.mode}, not RGB")
                    elif image.size != (size, size):
                        problems.append(
                            f"{name}: {image.size[0]}x{image.size[1]}, not {size}x{size}"
                        )
                    elif decode:
                        image.load()
            except Exception as err:  # PIL raises several types for a broken file
                problems.append(f"{name}: unreadable ({type(err).__name__}: {err})")
            if len(problems) >= 10:
                break
    lo, hi = count_range
    if not lo <= len(names) <= hi:
        problems.insert(0, f"{len(names):,} images, but Kaggle needs between {lo:,} and {hi:,}")
    if problems:
        raise DataError(
            f"{path} is not a valid submission: " + "; ".join(problems) + ". Write it again with "
            "write_submission (python -m monet predict ...)."
        )
    return len(names)
