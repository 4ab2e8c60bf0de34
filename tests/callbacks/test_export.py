"""ImageExport, the writer of `predict`: outputs named after their photos and never outside the
output folder; an output that cannot be written is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from monet.callbacks import ImageExport
from monet.callbacks.export import output_names
from monet.errors import ConfigError


def test_outputs_are_named_after_their_photos():
    names = ["beach/IMG_0003.jpg", "a.jpg", "a.PNG", "scan", "scan", "../../etc/x.jpeg"]
    assert output_names(names, "png") == [
        "beach/IMG_0003.png",
        "a.jpg.png",  # a.jpg and a.PNG would meet: each keeps its own suffix
        "a.PNG.png",
        "scan.png",
        "scan-1.png",  # equal names (TFRecord images) are numbered
        "etc/x.png",  # never outside the output folder
    ]


def test_an_output_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "out.png").write_bytes(b"a painting")
    with pytest.raises(ConfigError, match=r"out\.png is a file, not a folder; choose another"):
        ImageExport(str(tmp_path / "out.png")).check_output()
    with pytest.raises(ConfigError, match=r"out\.png is a file, not a folder; choose another"):
        ImageExport(str(tmp_path / "out.png" / "images.zip")).check_output()
    (tmp_path / "images.zip").write_bytes(b"an earlier submission")
    with pytest.raises(ConfigError, match=r"images\.zip already exists; .*--export.overwrite"):
        ImageExport(str(tmp_path / "images.zip")).check_output()
    ImageExport(str(tmp_path / "images.zip"), overwrite=True).check_output()
    (tmp_path / "folder.zip").mkdir()
    with pytest.raises(ConfigError, match=r"folder\.zip is a folder, not a zip file"):
        ImageExport(str(tmp_path / "folder.zip")).check_output()
    ImageExport(str(tmp_path / "new" / "deeper" / "images.zip")).check_output()  # created later
    if Path("/proc/self").is_dir():  # not writable, even by root
        with pytest.raises(ConfigError, match=r"/proc cannot be written \(.*\); choose another"):
            ImageExport("/proc/monet-out").check_output()
