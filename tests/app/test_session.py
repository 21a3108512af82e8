"""What a person's clicks make, and what an upload the page cannot use says."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.app.session import ClickMode, Clicks
from samexp.app.uploads import UploadError, read_upload


def test_two_clicks_in_box_mode_make_a_box_whichever_corner_comes_first():
    clicks = Clicks()
    assert clicks.click(80, 10, ClickMode.box) is False  # half a box answers nothing
    assert clicks.corner == [80, 10] and clicks.prompts() is None
    assert clicks.click(20, 60, ClickMode.box) is True
    assert clicks.box == [20, 10, 80, 60] and clicks.corner is None
    assert clicks.prompts().boxes.tolist() == [[20, 10, 80, 60]]


def test_points_add_up_with_their_labels_beside_the_box():
    clicks = Clicks()
    clicks.click(0, 0, ClickMode.box)
    clicks.click(50, 50, ClickMode.box)
    assert clicks.click(25, 25, ClickMode.positive)
    assert clicks.click(45, 5, ClickMode.negative)
    prompts = clicks.prompts()
    assert prompts.points.tolist() == [[25, 25], [45, 5]]
    assert prompts.labels.tolist() == [1, 0]
    assert prompts.boxes.tolist() == [[0, 0, 50, 50]]


def _png(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming `width`×`height`, with a tiny body (a decompression bomb's
    shape without its cost)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: (d / "notes.txt").write_text("not a picture") and d / "notes.txt",
            r"notes.txt is not an image this app can read",
        ),
        (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", r"empty.png is empty"),
        (
            lambda d: _png(d / "huge.png", 10_000, 10_000),
            r"huge.png is 10000×10000 pixels \(100 MP\); the limit is 40 MP",
        ),
        (
            lambda d: _png(d / "bomb.png", 400_000, 400_000),
            r"bomb.png claims more pixels than any photo",
        ),
    ],
    ids=["text-file", "empty", "too-many-pixels", "decompression-bomb"],
)
def test_an_upload_the_page_cannot_use_is_named_with_what_is_wrong(tmp_path: Path, make, message):
    with pytest.raises(UploadError, match=message):
        read_upload(make(tmp_path), max_mb=20, max_megapixels=40)


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (600, 600, 3), np.uint8))
    with pytest.raises(UploadError, match=r"big.png is 1.\d MB; the limit is 0.5 MB"):
        read_upload(path, max_mb=0.5, max_megapixels=40)


def test_a_truncated_photo_is_refused_by_name(tmp_path: Path):
    path = tmp_path / "cut.jpg"
    ok, data = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    path.write_bytes(data.tobytes()[:-200])
    with pytest.raises(UploadError, match=r"cut.jpg"):
        read_upload(path, max_mb=20, max_megapixels=40)


def test_a_good_upload_comes_back_as_rgb_as_viewers_show_it(tmp_path: Path):
    bgr = np.zeros((30, 40, 3), np.uint8)
    bgr[..., 2] = 255  # red, as cv2 writes it
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_upload(tmp_path / "red.png", max_mb=20, max_megapixels=40)
    assert image.shape == (30, 40, 3) and image[0, 0].tolist() == [255, 0, 0]
