"""Shapes that reach outside their image: how far, whether that is a near miss to clip or a
mistake to refuse, and the one line that says so.

Training's polygons and predict's boxes both go through here, so both clip the same near misses
and say it in the same words, once per split or command: annotation tools let a vertex or a box
corner land a few pixels past the edge (a click beside the image, a box dragged past it), and the
part outside covers no pixel, so clipping it loses nothing. What lies farther out than the image's
own size is not a near miss but another frame (normalised or another image's coordinates): the
callers refuse it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from samexp.config.errors import DatasetError

MARGIN = 1.0  # a near miss lies at most one image size past an edge; farther out is refused
SLACK = 0.5  # px: a point less than half a pixel past an edge still lies on the edge pixel
_EXAMPLES = 3  # places the line names before "..."

Reach = tuple[str, float]  # (where the shape is written, how far past its image's edge in px)


def reach(xy: np.ndarray, size: tuple[int, int]) -> float:
    """How far (px) the farthest of the N×2 points (x, y) lies past an edge of the (H, W) image;
    0 for points on or inside it (edges included: x in [0, W], y in [0, H])."""
    if not len(xy):
        return 0.0
    h, w = size
    return float(max(0.0, (-xy).max(), (xy - (w, h)).max()))


def far_point(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """The point lying farthest out when any lies more than MARGIN image sizes past an edge (not a
    near miss: the caller refuses it), else None."""
    h, w = size
    span = np.array([w, h], dtype=np.float64)
    if not ((xy < -span * MARGIN) | (xy > span * (1 + MARGIN))).any():
        return None
    return xy[np.abs(xy / span - 0.5).max(1).argmax()]


def note_outside(
    where: str, xy: np.ndarray, size: tuple[int, int], outside: list[Reach],
    point: str = "a polygon vertex",
) -> None:  # fmt: skip
    """Note in `outside` an annotation's shape (its N×2 points `xy`) reaching more than SLACK past
    the (H, W) image's edge; refuse, naming `where`, a `point` that is no near miss."""
    far = far_point(xy, size)
    if far is not None:
        h, w = size
        raise DatasetError(
            f"{where}: {point} ({far[0]:g}, {far[1]:g}) lies far outside the {w}×{h} image; "
            f"coordinates are pixels of the image"
        )
    past = reach(xy, size)
    if past > SLACK:
        outside.append((where, past))


def _px(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:.1f}"


def clipped_line(label: str, what: str, per_image: Sequence[Sequence[Reach]]) -> str | None:
    """The one line for `label` (a split, a command) saying how many shapes (`what`, a plural such
    as "polygon(s)") on how many images reach outside their image, how far and where; None when
    none does."""
    reaches = [r for image in per_image for r in image]
    if not reaches:
        return None
    images = sum(1 for image in per_image if image)
    places = list(dict.fromkeys(where for where, _ in reaches))
    named = ", ".join(places[:_EXAMPLES]) + (" ..." if len(places) > _EXAMPLES else "")
    return (
        f"{label}: {len(reaches)} {what} on {images} image(s) reach outside their image (by up to "
        f"{_px(max(px for _, px in reaches))} px: {named}); the parts outside are clipped"
    )


def say_clipped(
    logger: logging.Logger, label: str, what: str, per_image: Sequence[Sequence[Reach]]
) -> int:
    """Log `clipped_line` once (a warning: the data differ from what the file says); returns how
    many shapes were clipped, the count a summary reports."""
    line = clipped_line(label, what, per_image)
    if line is not None:
        logger.warning("%s", line)
    return sum(len(image) for image in per_image)
