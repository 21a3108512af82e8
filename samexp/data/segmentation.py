"""Polygons and RLE from annotation files to pycocotools' compressed RLE, checked against the image.

pycocotools trusts its input: a polygon vertex at x=1e9 overflows its integer arithmetic and
crashes the process, a zigzag of a few thousand vertices makes it trace gigabytes of outline, and
an RLE whose runs do not add up to the image decodes to an error only when training reads it.
Everything here is checked first, so a bad annotation stops the run at load, naming it. Vertices a
little outside the image are clipped there by the rasterisation and noted (`samexp.data.bounds`).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError
from samexp.config.limits import POLYGON_OUTLINE
from samexp.data.bounds import Reach, note_outside


def polygons_rle(
    polygons: list, size: tuple[int, int], where: str, *, outside: list[Reach]
) -> dict:
    """One compressed RLE for the union of `polygons` ([x1, y1, x2, y2, ...] in pixels) on an
    (H, W) image; numbers, a bounded reach outside the image and outline length are checked.

    A polygon reaching past the image's edge (a near miss: `samexp.data.bounds`) is clipped to it
    by the rasterisation and noted in `outside`, which the caller's split says once.
    """
    h, w = size
    checked, outline = [], 0.0
    for polygon in polygons:
        try:
            xy = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{where}: polygon coordinates must be numbers ({e})") from None
        if not np.isfinite(xy).all():
            raise DatasetError(f"{where}: a polygon coordinate is NaN or infinite")
        note_outside(where, xy, size, outside)
        # pycocotools joins vertices by max(|dx|, |dy|) steps, closing the polygon
        outline += float(np.abs(xy - np.roll(xy, 1, axis=0)).max(1).sum())
        checked.append(xy.ravel().tolist())
    POLYGON_OUTLINE.check(outline, where, f"its polygons' outline is {outline:,.0f} pixels long")
    return mask_utils.merge(mask_utils.frPyObjects(checked, h, w))


def _string_counts(counts: bytes, where: str) -> list[int]:
    """The runs of COCO's compressed RLE string (pycocotools' `rleFrString`, in Python)."""
    runs: list[int] = []
    value = shift = 0
    for byte in counts:
        c = byte - 48
        if not 0 <= c < 64:
            raise DatasetError(f"{where}: its RLE 'counts' string holds {chr(byte)!r}, not RLE")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:  # more 5-bit groups follow
            continue
        if c & 0x10:  # negative: sign-extend
            value |= -1 << shift
        runs.append(value + (runs[-2] if len(runs) > 2 else 0))
        value = shift = 0
    if shift:
        raise DatasetError(f"{where}: its RLE 'counts' string ends in the middle of a run")
    return runs


def rle_checked(seg: dict, size: tuple[int, int], where: str) -> dict:
    """A COCO RLE segmentation ({size, counts}: a list of runs or a compressed string) as a
    compressed RLE, its runs checked to cover the (H, W) image exactly."""
    h, w = size
    counts = seg["counts"]
    if isinstance(counts, list):
        if not all(type(c) is int and c >= 0 for c in counts):
            raise DatasetError(f"{where}: its RLE 'counts' must be whole numbers ≥ 0")
        runs = counts
    elif isinstance(counts, str | bytes):
        raw = counts.encode("ascii", "replace") if isinstance(counts, str) else counts
        runs = _string_counts(raw, where)
    else:
        raise DatasetError(f"{where}: its RLE 'counts' must be a list or a string")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise DatasetError(
            f"{where}: its RLE runs cover {sum(runs):,} pixels, but its {w}×{h} image has "
            f"{h * w:,}; re-export the masks"
        )
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": counts}
