"""Image files as bytes: read under any name, refused when incomplete, explained when unreadable.

A truncated photo (an interrupted copy or upload) decodes in most libraries: libjpeg fills the
missing rows with grey and says so only on stderr, with no file name. `require_complete` reads a
file's first and last bytes only, so a dataset refuses it when it is built rather than mid-training;
`read_image_bytes` repeats the check on the bytes it decodes, so no reader sees a partly grey
image. A file that fails is a stop, never a skip: a silently smaller dataset is a different study.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import IO

from PIL import Image

from samexp.config.errors import DatasetError
from samexp.config.limits import IMAGE_PIXELS, shown

_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_JPEG_PADDING = b"\x00 \t\r\n"  # some cameras and tools pad after the end marker
_PNG_START = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC; only data after it may follow
_HEAD = 16  # enough for every signature and size field read here
_TAIL = 4096  # bytes read from a file's end: room for padding, never the photo itself


def _missing_end(head: bytes, tail: bytes, size: int) -> str | None:
    """What the file's format says should be there and is not; None when complete or unchecked.

    JPEG, PNG, BMP and WebP tell from their first or last bytes whether a file is whole; other
    formats (TIFF) are left to the decoder, whose failure is reported as unreadable.
    """
    if head.startswith(_JPEG_START):
        return None if tail.rstrip(_JPEG_PADDING).endswith(_JPEG_END) else "no JPEG end marker"
    if head.startswith(_PNG_START):
        return None if _PNG_END in tail else "no PNG end chunk"
    if head.startswith(b"BM"):  # BMP: bytes 2-5 hold the file size (0 when the writer skipped it)
        declared = int.from_bytes(head[2:6], "little")
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":  # bytes 4-7: size after byte 8
        declared = int.from_bytes(head[4:8], "little") + 8
    else:
        return None
    return f"its header says {declared} bytes" if declared > size else None


def _check(path: str | PathLike, head: bytes, tail: bytes, size: int, source: object) -> None:
    missing = _missing_end(head, tail, size)
    if missing is None:
        return
    # The cheap test failed; full decoding decides. Photos with data after the image (the video
    # of a phone's motion photo) decode in full and are kept; truncated files raise here.
    try:
        with Image.open(source) as image:
            image.load()
    except Exception as exc:  # PIL raises several types for bad data; all mean "incomplete"
        raise DatasetError(
            f"{shown(path)} is truncated ({size} bytes, {missing}); re-export it or remove it"
        ) from exc


def _unreadable(path: str | PathLike, exc: OSError) -> DatasetError:
    return DatasetError(f"{shown(path)}: cannot be read as an image ({exc.strerror or exc})")


def require_complete(path: str | PathLike) -> None:
    """Raise DatasetError naming the file when it is truncated; reads its first and last bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - _TAIL, 0))
            tail = f.read()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    _check(path, head, tail, size, path)


def read_image_bytes(path: str | PathLike) -> bytes:
    """The file's bytes, checked complete. Bytes (not a file name) go to the decoder: OpenCV
    crashes the process on a name that is not valid UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    _check(path, data[:_HEAD], data[-_TAIL:], len(data), io.BytesIO(data))
    return data


@contextmanager
def open_image(source: str | PathLike | IO[bytes], path: str | PathLike) -> Iterator[Image.Image]:
    """PIL's view of an image with its header read and no pixel decoded yet, refused (naming
    `path`) when it has more pixels than samexp decodes: a 40 kB PNG can claim 10⁵×10⁵ of them.

    samexp's limit replaces PIL's decompression-bomb warning; PIL's guard is raised to follow a
    limit raised with SAMEXP_MAX_IMAGE_PIXELS (it refuses at twice its MAX_IMAGE_PIXELS).
    """
    limit = IMAGE_PIXELS.value
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(source)
        except Image.DecompressionBombError:
            beyond = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            IMAGE_PIXELS.check(beyond + 1, shown(path), f"it has over {beyond:,} pixels")
            raise  # not reached: PIL refuses only past samexp's limit
    with image:
        w, h = image.size
        IMAGE_PIXELS.check(w * h, shown(path), f"it is {w}×{h} pixels")
        yield image


def check_pixels(data: bytes, path: str | PathLike) -> None:
    """Refuse encoded bytes that decode past the pixel limit, from their header alone. A format
    PIL cannot read is left to the decoder (OpenCV then applies its own 2³⁰-pixel guard)."""
    try:
        with warnings.catch_warnings():  # PIL's complaints about a header: the decoder decides
            warnings.simplefilter("ignore")
            with open_image(io.BytesIO(data), path):
                pass
    except DatasetError:
        raise
    except Exception:  # PIL raises several types for headers it cannot read
        pass


def link_problem(path: Path) -> str | None:
    """Why a directory entry that is a symlink cannot be opened; None for anything else."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"broken symlink (its target {shown(os.readlink(path))} does not exist)"
        return f"symlink that cannot be followed ({exc.strerror})"
    return None
