"""EXIF orientation: turning stored pixels, masks and label maps into the frame viewers display.

Phone photos often store their pixels sideways with an EXIF tag saying how to turn them. The
helpers here read that tag from the header alone (validation must not decode every photo), turn
H×W(×C) arrays by it, and decide whether a mask was drawn on the stored or the displayed image.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
from PIL import Image

from samexp.config.errors import DatasetError
from samexp.data.files import open_image, require_complete, shown

EXIF_ORIENTATION = 0x0112


# EXIF orientation -> the view of the stored pixels that shows them as displayed; the same
# transposes as PIL.ImageOps.exif_transpose, on numpy arrays so masks and label maps can follow.
_ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180°
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # stored rotated 90° counter-clockwise: turn it clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),
}


def orientation_of(image: Image.Image) -> int:
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block should not make a readable photo unusable
        return 1
    return value if value in _ORIENTATIONS else 1


def exif_orientation(path: str | PathLike[str]) -> int:
    """The EXIF orientation tag (1-8) from the header; 1 when absent, invalid or unreadable."""
    try:
        with Image.open(path) as image:
            return orientation_of(image)
    except Exception:  # unreadable files are reported by whatever decodes them
        return 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn/mirror an H×W or H×W×C array from stored to displayed orientation (EXIF values 1-8)."""
    if orientation not in _ORIENTATIONS:
        raise ValueError(f"EXIF orientation must be 1-8, got {orientation}")
    return np.ascontiguousarray(_ORIENTATIONS[orientation](array))


def displayed_shape(shape: tuple[int, int], orientation: int) -> tuple[int, int]:
    """(H, W) after `apply_orientation`: orientations 5-8 swap height and width."""
    return (shape[1], shape[0]) if orientation >= 5 else shape


def image_header(path: str | PathLike[str]) -> tuple[tuple[int, int], int]:
    """Stored (H, W) and EXIF orientation from the header alone: validation must not decode photos.

    Every format validates its images here, so this is also where a truncated file is refused
    (`require_complete` reads only the file's ends).
    """
    require_complete(path)
    try:
        with open_image(path, path) as image:
            w, h = image.size
            return (h, w), orientation_of(image)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises several types for bad files; all mean "unreadable"
        raise DatasetError(shown(f"{path}: cannot be read as an image ({exc})")) from exc


def mask_orientation(
    image_path: str | PathLike[str],
    image_shape: tuple[int, int],
    orientation: int,
    mask_path: str | PathLike[str],
    mask_shape: tuple[int, int],
    kind: str = "mask",
) -> int:
    """The orientation that puts a mask on its image as displayed.

    A mask of the image's stored size was drawn on the stored pixels and turns with the image
    (this wins when both sizes agree, e.g. a 180° turn); one of the displayed size is used as is.
    Any other size is the user's mismatch, reported with both image sizes.
    """
    if tuple(mask_shape) == tuple(image_shape):
        return orientation
    displayed = displayed_shape(image_shape, orientation)
    if tuple(mask_shape) == displayed:
        return 1
    (h, w), (sh, sw), (mh, mw) = image_shape, displayed, mask_shape
    as_shown = "and as displayed" if orientation == 1 else f"and {sw}×{sh} as displayed"
    raise DatasetError(
        shown(
            f"size mismatch: image {image_path} is {w}×{h} (W×H) as stored {as_shown} (EXIF "
            f"orientation {orientation}) but {kind} {mask_path} is {mw}×{mh}; a {kind} must "
            f"match its image as stored or as displayed"
        )
    )


def annotation_frame(stored: tuple[int, int], orientation: int, stated: tuple[int, int] | None,
                     where: str, fix: str) -> tuple[tuple[int, int], int]:  # fmt: skip
    """The (H, W) frame an annotation file's coordinates are in, and the EXIF orientation that
    turns the image's pixels into it. Annotation tools show (and so annotate) images as
    displayed; a size that matches only the stored pixels was written by a tool that ignored
    EXIF, and then the pixels are used as stored. Else `where` (image: file) and `fix` say why."""
    displayed = displayed_shape(stored, orientation)
    if stated is None or stated == displayed:
        return displayed, orientation
    if stated == stored:
        return stored, 1
    (h, w), (dh, dw) = stored, displayed
    as_shown = f" ({dw}×{dh} as displayed, EXIF orientation {orientation})" * (orientation > 1)
    raise DatasetError(
        f"{where} says it is {stated[1]}×{stated[0]} (W×H) but the image is {w}×{h}{as_shown}; {fix}"
    )
