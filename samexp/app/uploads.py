"""An uploaded file becomes an RGB image or a sentence for the page: size is checked before the file
is read, pixel count before it is decoded (a small PNG can claim 100000×100000 pixels), and
anything undecodable is named, never a traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samexp.config.errors import SamexpError
from samexp.data.base import read_image_rgb


class UploadError(SamexpError):
    """What the page says about a file it cannot use."""


def read_upload(path: str | Path, max_mb: float, max_megapixels: float) -> np.ndarray:
    """H×W×3 uint8 RGB as viewers show it (EXIF orientation applied), or UploadError."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UploadError(f"{name}: the upload could not be read ({e.strerror})") from None
    if size > max_mb * 1e6:
        raise UploadError(f"{name} is {size / 1e6:.1f} MB; the limit is {max_mb:g} MB "
                          "(start the app with --max-upload-mb to change it)")  # fmt: skip
    if size == 0:
        raise UploadError(f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:  # reads the header only
                width, height = header.size
    except Image.DecompressionBombError:  # over twice PIL's own limit (~179 MP)
        raise UploadError(f"{name} claims more pixels than any photo; the limit is "
                          f"{max_megapixels:g} MP (--max-megapixels)") from None  # fmt: skip
    except (UnidentifiedImageError, OSError, ValueError):
        raise UploadError(
            f"{name} is not an image this app can read (JPEG, PNG, TIFF, BMP or WebP)"
        ) from None
    if width * height > max_megapixels * 1e6:
        raise UploadError(f"{name} is {width}×{height} pixels ({width * height / 1e6:.0f} MP); "
                          f"the limit is {max_megapixels:g} MP (--max-megapixels)")  # fmt: skip
    try:
        return read_image_rgb(path, orient=True)
    except SamexpError as e:
        raise UploadError(str(e).replace(str(path), name)) from None
