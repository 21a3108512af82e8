"""Specifications for reading image files as bytes: what counts as complete, how names are shown."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.config.errors import DatasetError
from samexp.data.base import read_image_rgb
from samexp.data.files import link_problem, read_image_bytes, require_complete, shown


def _jpeg(path: Path, tail: bytes = b"") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels)
    path.write_bytes(data.tobytes() + tail)
    return data.tobytes()


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00" * 300 + b"\r\n", id="zero-padding-after-the-end-marker"),
        pytest.param(b"\x00\x00\x00\x18ftypmp42" + bytes(8000), id="motion-photo-video"),
    ],
)
def test_a_whole_jpeg_with_data_after_its_end_is_kept(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "photo.jpg"
    _jpeg(path, tail)
    require_complete(path)
    assert read_image_bytes(path) == path.read_bytes()
    assert read_image_rgb(path).shape == (48, 64, 3)


def test_a_jpeg_cut_short_is_refused_even_with_padding_after_the_cut(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    data = _jpeg(path)
    path.write_bytes(data[: len(data) // 2] + bytes(64))
    with pytest.raises(DatasetError, match=r"photo.jpg is truncated \(\d+ bytes, no JPEG end"):
        require_complete(path)


def test_files_of_unchecked_formats_pass_and_are_left_to_the_decoder(tmp_path: Path) -> None:
    path = tmp_path / "notes.tif"
    path.write_bytes(b"II*\x00 not really a tiff")
    require_complete(path)
    with pytest.raises(DatasetError, match="notes.tif: cannot be read as an image"):
        read_image_rgb(path)


def test_an_empty_file_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.png: cannot be read as an image"):
        read_image_rgb(path)


def test_shown_writes_non_utf8_bytes_of_a_name_as_escapes() -> None:
    assert shown(os.fsdecode(b"/data/ring\xff2.jpg")) == "/data/ring\\xff2.jpg"
    assert shown(Path("/data/ringé.jpg")) == "/data/ringé.jpg"
    assert shown("lone \ud800") == "lone \\ud800"


def test_link_problem_tells_loops_from_broken_links_and_ignores_the_rest(tmp_path: Path) -> None:
    (tmp_path / "real.jpg").write_bytes(b"x")
    os.symlink("real.jpg", tmp_path / "ok.jpg")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    os.symlink("gone.jpg", tmp_path / "broken.jpg")
    assert link_problem(tmp_path / "real.jpg") is None
    assert link_problem(tmp_path / "ok.jpg") is None
    assert link_problem(tmp_path / "loop.jpg") == "symlink loop"
    assert link_problem(tmp_path / "broken.jpg") == (
        "broken symlink (its target gone.jpg does not exist)"
    )
