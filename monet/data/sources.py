"""Finding and reading images: Kaggle-layout folders, the Kaggle zip, explicit file lists.

TFRecords are framed and CRC-checked here (the `tfrecord` package's reader skips the CRCs and
fails with bare errors); the records themselves are parsed with the `tfrecord` package.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tfrecord import example_pb2
from tfrecord.writer import TFRecordWriter
from torchvision.io import ImageReadMode, decode_image

from monet.errors import DataError

TFREC_SUFFIXES = (".tfrec", ".tfrecord", ".tfrecords")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# raster formats that torchvision leaves to PIL (`decode_rgb` falls back to it): a user's own
# photos to translate come in any of them
PIL_SUFFIXES = (".gif", ".jfif", ".jpe", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".ico")
HOW_TO_GET = (
    "Get the Kaggle data with `kaggle competitions download -c gan-getting-started`, then unzip "
    "it into data/ or pass the zip itself (--data.root gan-getting-started.zip), or set MONET_DATA."
)


@dataclass(frozen=True)
class SourceFile:
    """One file to read: a path on disk or a member of a zip archive."""

    name: str  # shown in messages: "path" or "archive.zip:member"
    kind: str  # "tfrecord" | "image"
    read: Callable[[], bytes]
    stamp: str  # identifies this version of the file, for the on-disk cache key


def _kind(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    if suffix in TFREC_SUFFIXES:
        return "tfrecord"
    if suffix in IMAGE_SUFFIXES + PIL_SUFFIXES:
        return "image"
    return None


def _disk_file(path: Path) -> SourceFile:
    stat = path.stat()
    return SourceFile(
        str(path), _kind(path.name), path.read_bytes, f"{stat.st_size}:{stat.st_mtime_ns}"
    )


def _zip_files(path: Path) -> list[SourceFile]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise DataError(f"{path} is not a readable zip file ({err}). {HOW_TO_GET}") from None
    out = []
    for info in archive.infolist():
        kind = _kind(info.filename)
        if info.is_dir() or kind is None:
            continue

        def read(member: str = info.filename) -> bytes:
            with zipfile.ZipFile(path) as zf:
                return zf.read(member)

        out.append(
            SourceFile(f"{path}:{info.filename}", kind, read, f"{info.file_size}:{info.CRC}")
        )
    return out


def find_files(
    root: str | Path | None,
    domain: str = "monet",
    fmt: str = "auto",
    files: list[str] | None = None,
) -> list[SourceFile]:
    """Resolve the data source to a sorted list of files of one kind.

    `root` is a folder in the Kaggle layout (``monet_tfrec/``, ``monet_jpg/``, ``photo_*``), a
    folder of images or TFRecords, or the Kaggle zip. `files` is an explicit list instead.
    `fmt` picks ``tfrecord`` or ``jpg`` (any image suffix); ``auto`` prefers TFRecords.
    """
    if fmt not in ("auto", "tfrecord", "jpg"):
        raise DataError(f"format={fmt!r} is not known: use auto, tfrecord or jpg.")
    if files:
        found = []
        for f in files:
            p = Path(f)
            if not p.is_file():
                raise DataError(
                    f"data file {p} does not exist (listed in data.files). {HOW_TO_GET}"
                )
            if _kind(p.name) is None:
                raise DataError(
                    f"data file {p} has an unknown suffix: use {', '.join(TFREC_SUFFIXES)} for "
                    f"TFRecords or {', '.join(IMAGE_SUFFIXES + PIL_SUFFIXES)} for images."
                )
            found.append(_disk_file(p))
        return _pick(found, fmt, f"data.files ({len(files)} files)", "TFRecord or image files")
    if root is None:
        raise DataError(f"no data given: set data.root or data.files. {HOW_TO_GET}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} does not exist. {HOW_TO_GET}")
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise DataError(f"data root {root} is a file but not a zip archive. {HOW_TO_GET}")
        candidates = [f for f in _zip_files(root) if _in_domain(f.name.split(":", 1)[1], domain)]
    else:
        candidates = [
            _disk_file(p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and _kind(p.name) and _in_domain(str(p.relative_to(root)), domain)
        ]
    tfrec, jpg = f"{domain}_tfrec/*.tfrec", f"{domain}_jpg/*.jpg"
    looked = {"auto": f"{tfrec} or {jpg}", "tfrecord": tfrec, "jpg": jpg}[fmt]
    return _pick(candidates, fmt, str(root), looked)


def _in_domain(relative: str, domain: str) -> bool:
    """Files in `<domain>_tfrec/` or `<domain>_jpg/` anywhere below, or loose files in the root."""
    parts = Path(relative).parts
    folders = [p.lower() for p in parts[:-1]]
    if not folders:
        return True
    return any(f.startswith(f"{domain}_") for f in folders)


def _pick(candidates: list[SourceFile], fmt: str, where: str, looked: str) -> list[SourceFile]:
    """Keep one kind: the one `fmt` names, or for ``auto`` TFRecords when there are any."""
    has_tfrecords = any(f.kind == "tfrecord" for f in candidates)
    kind = "tfrecord" if fmt == "tfrecord" or (fmt == "auto" and has_tfrecords) else "image"
    picked = sorted((f for f in candidates if f.kind == kind), key=lambda f: f.name)
    if not picked:
        raise DataError(
            f"no matching files in {where}: looked for {looked} (format={fmt}). {HOW_TO_GET}"
        )
    return picked


def masked_crc(data: bytes | memoryview) -> bytes:
    return TFRecordWriter.masked_crc(data)


def tfrecord_records(data: bytes, name: str) -> Iterator[bytes]:
    """Yield the payload of each record, checking both CRCs of the TFRecord framing."""
    view, pos, index = memoryview(data), 0, 0
    fix = "the file is truncated or corrupt: download it again."
    while pos < len(view):
        if pos + 12 > len(view):
            raise DataError(
                f"{name}: record {index} is truncated (header cut at byte {pos}); {fix}"
            )
        header = view[pos : pos + 8]
        if masked_crc(header) != view[pos + 8 : pos + 12]:
            raise DataError(f"{name}: record {index} has a bad length CRC at byte {pos}; {fix}")
        (length,) = struct.unpack("<Q", header)
        start, end = pos + 12, pos + 12 + length
        if end + 4 > len(view):
            raise DataError(
                f"{name}: record {index} is truncated (needs {length} bytes at byte {start}, "
                f"file has {len(view)}); {fix}"
            )
        payload = view[start:end]
        if masked_crc(payload) != view[end : end + 4]:
            raise DataError(f"{name}: record {index} has a bad data CRC at byte {start}; {fix}")
        yield payload.tobytes()
        pos, index = end + 4, index + 1


def parse_example(payload: bytes, name: str, index: int) -> tuple[str, bytes]:
    """The Kaggle features: `image_name` (bytes) and `image` (encoded JPEG bytes)."""
    example = example_pb2.Example()
    try:
        example.ParseFromString(payload)
    except Exception as err:  # protobuf raises its own DecodeError
        raise DataError(f"{name}: record {index} is not a tf.train.Example ({err}).") from None
    feature = example.features.feature
    if "image" not in feature or not feature["image"].bytes_list.value:
        raise DataError(
            f"{name}: record {index} has no bytes feature 'image' (features: {sorted(feature)}); "
            "Monet reads the Kaggle layout: image_name, image, target."
        )
    image_name = feature["image_name"].bytes_list.value if "image_name" in feature else []
    label = image_name[0].decode(errors="replace") if image_name else f"record {index}"
    return label, feature["image"].bytes_list.value[0]


def decode_rgb(data: bytes, name: str, image_name: str) -> torch.Tensor:
    """Decode to a uint8 (3, H, W) RGB tensor; grayscale, CMYK, RGBA and palettes are converted."""
    try:
        image = decode_image(
            torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB
        )
        return image.contiguous()  # decoders may hand back an HWC-strided view
    except (RuntimeError, ValueError):
        pass  # not jpeg/png/webp/gif, or a variant torchvision rejects: let PIL try
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
    except Exception as err:
        raise DataError(
            f"{name}: image {image_name!r} could not be decoded ({type(err).__name__}: {err}); "
            "remove the file or download the data again."
        ) from None
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()


def read_images(source: SourceFile) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (image_name, uint8 RGB tensor) for each image a file holds."""
    try:
        data = source.read()
    except OSError as err:
        raise DataError(f"{source.name} could not be read ({err}).") from None
    if source.kind == "image":
        yield Path(source.name).stem, decode_rgb(data, source.name, Path(source.name).name)
        return
    for index, payload in enumerate(tfrecord_records(data, source.name)):
        label, image = parse_example(payload, source.name, index)
        yield label, decode_rgb(image, f"{source.name} (record {index})", label)
