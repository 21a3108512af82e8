"""The user's prompts, checked where they enter: shape and labels once, before any model is built;
bounds per image, naming the prompt and the image's size. Coordinates are original-image pixels."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samexp.errors import SamexpError

HOW = "prompt.box=[x0,y0,x1,y1], prompt.boxes=[[x0,y0,x1,y1],...] or prompt.points=[[x,y],...]"


@dataclass(frozen=True)
class Prompts:
    """N prompts: one per box (every box also gets the points), or one made of the points alone."""

    boxes: np.ndarray | None  # N×4 float, x0 y0 x1 y1
    box_names: tuple[str, ...]  # how the user wrote each box, for messages
    points: np.ndarray | None  # P×2 float, x y
    labels: np.ndarray | None  # P int, 1 foreground / 0 background

    @property
    def count(self) -> int:
        return len(self.boxes) if self.boxes is not None else 1

    def to_json(self) -> dict[str, Any]:
        def plain(a: np.ndarray | None) -> list | None:
            return None if a is None else a.tolist()

        return {
            "boxes": plain(self.boxes),
            "points": plain(self.points),
            "labels": plain(self.labels),
        }


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


# what a refused value is echoed as: a crafted box nested 5000 levels deep or a megabyte long
# must not become the message (nor fail while being printed)
_ECHO = reprlib.Repr()  # keyword arguments only from Python 3.12
_ECHO.maxlevel, _ECHO.maxlist, _ECHO.maxstring, _ECHO.maxother = 2, 6, 40, 40


def echo(value: Any) -> str:
    """A refused prompt value as a message may show it: shortened, never deeper than 2 levels."""
    return _ECHO.repr(value)


def coordinates(name: str, value: Any, n: int, form: str) -> list[float]:
    """`value` as n finite floats, or an error naming the key and the expected form.

    Every prompt passes here wherever it enters (command line, prompts file, demo clicks, API),
    before any model runs: a NaN compares false with every bound, so it would pass the bounds
    check and reach the decoder.
    """
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) != n or isinstance(value, str):
        raise SamexpError(f"{name}={echo(value)} must be {n} numbers {form}")
    if not all(math.isfinite(v) for v in numbers):
        raise SamexpError(f"{name}={_fmt(numbers)} is not finite: {form} must be pixel "
                          "coordinates, never NaN or infinity")  # fmt: skip
    return numbers


def parse_prompts(
    box: Sequence[float] | None = None,
    boxes: Sequence[Sequence[float]] | None = None,
    points: Sequence[Sequence[float]] | None = None,
    labels: Sequence[int] | None = None,
) -> Prompts:
    """Check what can be checked without an image; every message names the key to fix."""
    if box is not None and boxes is not None:
        raise SamexpError("give prompt.box=[x0,y0,x1,y1] or prompt.boxes=[[...],...], not both")
    if box is None and boxes is None and points is None:
        raise SamexpError(f"mode=prompt needs a prompt: {HOW}; or mode=auto to segment everything")
    if boxes is not None and len(boxes) == 0:
        raise SamexpError("prompt.boxes=[] holds no box; give at least one [x0,y0,x1,y1]")
    named = [("prompt.box", box)] if box is not None else []
    named += [(f"prompt.boxes[{i}]", b) for i, b in enumerate(boxes or [])]
    checked = [coordinates(name, b, 4, "[x0, y0, x1, y1]") for name, b in named]
    for (name, _), (x0, y0, x1, y1) in zip(named, checked, strict=True):
        if x0 > x1 or y0 > y1:
            raise SamexpError(
                f"{name}={_fmt((x0, y0, x1, y1))} has {'x0 > x1' if x0 > x1 else 'y0 > y1'}: "
                "write boxes as [x0, y0, x1, y1] with the top-left corner first"
            )
    if labels is not None and points is None:
        raise SamexpError("prompt.labels given without prompt.points=[[x,y],...]")
    if points is not None:
        if len(points) == 0:
            raise SamexpError("prompt.points=[] holds no point; give at least one [x, y]")
        points = [coordinates(f"prompt.points[{i}]", p, 2, "[x, y]") for i, p in enumerate(points)]
        labels = [1] * len(points) if labels is None else list(labels)
        if len(labels) != len(points):
            raise SamexpError(
                f"prompt.points has {len(points)} points but prompt.labels has {len(labels)} "
                "labels; give one label per point (or none: all foreground)"
            )
        for i, v in enumerate(labels):
            if v not in (0, 1):
                raise SamexpError(
                    f"prompt.labels[{i}]={v}: labels are 1 (foreground) or 0 (background)"
                )
    return Prompts(
        boxes=np.array(checked, dtype=np.float64) if checked else None,
        box_names=tuple(name for name, _ in named),
        points=None if points is None else np.array(points, dtype=np.float64),
        labels=None if points is None else np.array(labels, dtype=np.int64),
    )


def check_inside(prompts: Prompts, image: str, height: int, width: int) -> None:
    """Every box and point lies on the image (edges included)."""
    where = (
        f"{image}, which is {width}×{height} (W×H): x must be in [0, {width}], y in [0, {height}]"
    )
    for name, b in zip(
        prompts.box_names, [] if prompts.boxes is None else prompts.boxes, strict=True
    ):
        if min(b) < 0 or max(b[0], b[2]) > width or max(b[1], b[3]) > height:
            raise SamexpError(f"{name}={_fmt(b)} lies outside {where}")
    for i, (x, y) in enumerate(prompts.points if prompts.points is not None else []):
        if not (0 <= x <= width and 0 <= y <= height):
            raise SamexpError(f"prompt.points[{i}]={_fmt((x, y))} lies outside {where}")
