"""Finding and reading images: Kaggle-layout folders, the Kaggle zip, any folder or zip of images
at any depth, explicit file lists; one decoder (`decode_rgb`) for every source.

TFRecords are framed and CRC-checked here (the `tfrecord` package's reader skips the CRCs and
fails with bare errors); the records themselves are parsed with the `tfrecord` package.
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tfrecord import example_pb2
from tfrecord.writer import TFRecordWriter

from monet.errors import DataError

try:  # iPhone photos (HEIC/HEIF): wheels with libheif inside for Linux, macOS and Windows
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - a platform without a pillow-heif wheel
    HEIF = False

TFREC_SUFFIXES = (".tfrec", ".tfrecord", ".tfrecords")
# every raster format PIL (with pillow-heif) reads: a user's own photos come in any of them
IMAGE_SUFFIXES = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
    ".heic", ".heif", ".avif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".ico",
)  # fmt: skip
# the Kaggle layout: a tree with one of these folders is read by domain, any other tree whole
KAGGLE_FOLDERS = {f"{d}_{k}" for d in ("monet", "photo") for k in ("jpg", "tfrec")}
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
    relative: str = ""  # the path below the root (posix): outputs are named after it


def _kind(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    if suffix in TFREC_SUFFIXES:
        return "tfrecord"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return None


def _hidden(relative: str) -> bool:
    """Files no one sees: dot files, macOS zip forks (``__MACOSX/``), Windows thumbnails."""
    parts = relative.split("/")
    dotted = any(p.startswith(".") and p not in (".", "..") for p in parts)
    return (
        dotted
        or "__MACOSX" in parts
        or parts[-1]
        in (
            "Thumbs.db",
            "desktop.ini",
        )
    )


def _disk_file(path: Path, relative: str | None = None) -> SourceFile:
    stat = path.stat()
    return SourceFile(
        str(path),
        _kind(path.name),
        path.read_bytes,
        f"{stat.st_size}:{stat.st_mtime_ns}",
        relative or path.name,
    )


def _climbs(name: str) -> bool:
    """A zip member whose path leaves the archive (``../x.jpg``, ``/etc/x.jpg``)."""
    name = name.replace("\\", "/")
    return name.startswith("/") or ".." in name.split("/")


def _zip_files(path: Path) -> list[SourceFile]:
    """Every file of the zip; when all lie in one folder (a zipped folder), below that folder.
    Members whose path climbs out of the archive are listed with no kind (skipped)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise DataError(f"{path} is not a readable zip file ({err}). {HOW_TO_GET}") from None
    members = [i for i in archive.infolist() if not i.is_dir() and not _hidden(i.filename)]
    inside = [m for m in members if not _climbs(m.filename)]
    tops = {m.filename.split("/", 1)[0] for m in inside}
    strip = len(tops) == 1 and all("/" in m.filename for m in inside)
    out = []
    for info in members:

        def read(member: str = info.filename) -> bytes:
            with zipfile.ZipFile(path) as zf:
                return zf.read(member)

        climbs = _climbs(info.filename)
        relative = info.filename.split("/", 1)[1] if strip and not climbs else info.filename
        kind = None if climbs else _kind(info.filename)
        stamp = f"{info.file_size}:{info.CRC}"
        out.append(SourceFile(f"{path}:{info.filename}", kind, read, stamp, relative))
    return out


def find_files(
    root: str | Path | None,
    domain: str = "monet",
    fmt: str = "auto",
    files: list[str] | None = None,
    exclude: tuple[Path, ...] = (),
) -> list[SourceFile]:
    """Resolve the data source to a list of files of one kind, sorted by their path below the
    root (folder by folder, case-sensitive).

    `root` is a folder or zip in the Kaggle layout (``monet_tfrec/``, ``monet_jpg/``,
    ``photo_*``: the domain's folders and loose files are read), any other folder or zip:
    every image (or TFRecord) below it, at any depth, or one image or TFRecord file. Files that
    are not images, and zip members whose path climbs out of the archive, are skipped and
    counted in one line. Files in `exclude` (the outputs of `predict`) or below it are left
    out. `files` is an explicit list instead. `fmt` picks ``tfrecord`` or ``jpg`` (any image
    suffix); ``auto`` prefers TFRecords.
    """
    if fmt not in ("auto", "tfrecord", "jpg"):
        raise DataError(f"format={fmt!r} is not known: use auto, tfrecord or jpg.")
    if files:
        return _pick(
            [_listed_file(f) for f in files],
            fmt,
            f"data.files ({len(files)} files)",
            "TFRecord or image files",
        )
    if root is None:
        raise DataError(f"no data given: set data.root or data.files. {HOW_TO_GET}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} does not exist. {HOW_TO_GET}")
    candidates = _candidates(root, exclude)
    tfrec, jpg = f"{domain}_tfrec/*.tfrec", f"{domain}_jpg/*.jpg"
    looked = {"auto": f"{tfrec} or {jpg}", "tfrecord": tfrec, "jpg": jpg}[fmt]
    if any(f in KAGGLE_FOLDERS for c in candidates for f in c.relative.lower().split("/")[:-1]):
        candidates = [c for c in candidates if _in_domain(c.relative, domain)]
    else:
        looked += {"tfrecord": ", or TFRecords", "jpg": ", or images"}.get(fmt, ", or any images")
        looked += " at any depth"
    skipped = sorted((c.relative for c in candidates if c.kind is None), key=_order)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"monet: {root}: skipped {_why_skipped(skipped)}: {shown}", file=sys.stderr)
    return _pick(candidates, fmt, str(root), looked)


def _listed_file(name: str) -> SourceFile:
    """One file of `data.files`, refused in one line if missing or of an unknown kind."""
    p = Path(name)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist (listed in data.files). {HOW_TO_GET}")
    if _kind(p.name) is None:
        raise DataError(
            f"data file {p} has an unknown suffix: use {', '.join(TFREC_SUFFIXES)} for "
            f"TFRecords or {', '.join(IMAGE_SUFFIXES)} for images."
        )
    return _disk_file(p)


def _candidates(root: Path, exclude: tuple[Path, ...]) -> list[SourceFile]:
    """Every file of a root (one file, a zip or a folder), skipped kinds included."""
    if root.is_file() and _kind(root.name) is not None:  # one photo (or one TFRecord file)
        return [_disk_file(root)]
    if root.is_file():
        if not zipfile.is_zipfile(root):
            raise DataError(
                f"data root {root} is neither a folder, a zip archive, an image nor a TFRecord "
                f"file ({', '.join(IMAGE_SUFFIXES[:5])}, ...). {HOW_TO_GET}"
            )
        return _zip_files(root)
    excluded = [e.resolve() for e in exclude]
    return [
        _disk_file(p, p.relative_to(root).as_posix())
        for p in root.rglob("*")
        if p.is_file()
        and not _hidden(p.relative_to(root).as_posix())
        and not any(p.resolve().is_relative_to(e) for e in excluded)
    ]


def _why_skipped(skipped: list[str]) -> str:
    """'2 files that are not images', '1 file that lies outside the archive', ..."""
    one, climbing = len(skipped) == 1, sum(_climbs(s) for s in skipped)
    reasons = []
    if climbing < len(skipped):
        reasons.append("is not an image" if one else "are not images")
    if climbing:
        reasons.append("lies outside the archive" if one else "lie outside the archive")
    return f"{len(skipped)} file{'' if one else 's'} that " + " or ".join(reasons)


def _in_domain(relative: str, domain: str) -> bool:
    """Files in `<domain>_tfrec/` or `<domain>_jpg/` anywhere below, or loose files in the root."""
    folders = [p.lower() for p in relative.split("/")[:-1]]
    if not folders:
        return True
    return any(f.startswith(f"{domain}_") for f in folders)


def _order(relative: str) -> tuple[str, ...]:
    """The documented order: by path below the root, folder by folder, case-sensitive."""
    return tuple(relative.split("/"))


def _pick(candidates: list[SourceFile], fmt: str, where: str, looked: str) -> list[SourceFile]:
    """Keep one kind: the one `fmt` names, or for ``auto`` TFRecords when there are any."""
    has_tfrecords = any(f.kind == "tfrecord" for f in candidates)
    kind = "tfrecord" if fmt == "tfrecord" or (fmt == "auto" and has_tfrecords) else "image"
    picked = sorted(
        (f for f in candidates if f.kind == kind), key=lambda f: (_order(f.relative), f.name)
    )
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
    """Decode to a uint8 (3, H, W) RGB tensor as a photo viewer shows the image: EXIF
    orientation applied, 16 bits scaled to 8, palette, grey and CMYK converted, transparency
    composited on white, the first frame of an animation. Every source decodes here."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = _viewed_rgb(ImageOps.exif_transpose(im))
    except Exception as err:
        heif = Path(image_name).suffix.lower() in (".heic", ".heif") and not HEIF
        fix = (
            "install pillow-heif (pip install pillow-heif) or convert it to JPEG"
            if heif
            else "remove the file or download the data again"
        )
        raise DataError(
            f"{name}: image {image_name!r} could not be decoded ({type(err).__name__}: {err}); "
            f"{fix}."
        ) from None
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()


def _viewed_rgb(im: Image.Image) -> Image.Image:
    """An 8-bit RGB image of any mode, as a viewer composes it."""
    if im.mode.startswith("I") or im.mode == "F":  # 16-bit (or 32-bit) grey: scale to 8 bits
        array = np.asarray(im, dtype=np.float64)
        scale = 1 / 257 if im.mode != "F" else (255 if array.max(initial=0) <= 1 else 1)
        im = Image.fromarray(np.clip(array * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    return im.convert("RGB")


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
