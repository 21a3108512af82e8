"""The user's prompts, checked where they enter: shape and labels once, before any model is built;
bounds per image, naming the prompt and the image's size. Coordinates are original-image pixels."""

from __future__ import annotations

import dataclasses
import logging
import math
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samexp.config.errors import SamexpError
from samexp.data.bounds import SLACK, Reach, far_point, reach, say_clipped

log = logging.getLogger(__name__)

HOW = "prompt.box=[x0,y0,x1,y1], prompt.boxes=[[x0,y0,x1,y1],...] or prompt.points=[[x,y],...]"


@dataclass(frozen=True)
class Prompts:
    """N prompts: one per box (every box also gets the points), or one made of the points alone."""

    boxes: np.ndarray | None  # N×4 float, x0 y0 x1 y1
    box_names: tuple[str, ...]  # how the user wrote each box, for messages: "box", "boxes[1]"
    points: np.ndarray | None  # P×2 float, x y
    labels: np.ndarray | None  # P int, 1 foreground / 0 background
    origin: str = "prompt."  # what messages put before a name: the key, or a prompts file's entry

    def key(self, name: str) -> str:
        """How a message names the box or point `name`: `prompt.boxes[1]`, `entry 2 (...): box`."""
        return f"{self.origin}{name}"

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
        box_names=tuple(name.removeprefix("prompt.") for name, _ in named),
        points=None if points is None else np.array(points, dtype=np.float64),
        labels=None if points is None else np.array(labels, dtype=np.int64),
    )


def fit_prompts(
    prompts: Prompts, image: str, height: int, width: int, outside: list[Reach]
) -> tuple[Prompts, list[str]]:
    """`prompts` on one W×H image (edges included: x in [0, W], y in [0, H]) and what is wrong
    with them, one line each naming the prompt and the image's size.

    A box reaching past the edge by a near miss (`samexp.data.bounds`: at most the image's own size
    out, as training's polygons) is clipped to the image and noted in `outside`: its part outside
    covers no pixel, so the clipped box asks for the same object. A box farther out, or with no
    part on the image, is a problem. Points are never clipped: a point names the object under it,
    and moved to the edge it would name another one, so a point outside is a problem.
    """
    size, problems = (height, width), []
    frame = f"{image}, which is {width}×{height} (W×H)"
    bounds = f"x must be in [0, {width}], y in [0, {height}]"
    boxes = None if prompts.boxes is None else prompts.boxes.copy()
    for name, box in zip(prompts.box_names, [] if boxes is None else boxes, strict=True):
        key, corners = prompts.key(name), box.reshape(2, 2)
        if far_point(corners, size) is not None:
            problems.append(f"{key}={_fmt(box)} lies outside {frame}, by {reach(corners, size):,.0f} "
                            f"px: farther than the image's size, so it is not clipped; {bounds}")  # fmt: skip
        elif box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0:
            problems.append(f"{key}={_fmt(box)} lies outside {frame}: no part of it is on the "
                            f"image; {bounds}")  # fmt: skip
        else:
            past = reach(corners, size)
            box[:] = np.clip(box, 0, [width, height, width, height])
            if past > SLACK:  # less is within the edge pixel, as for polygons
                outside.append((f"{image} {key}", past))
    for i, (x, y) in enumerate(prompts.points if prompts.points is not None else []):
        if not (0 <= x <= width and 0 <= y <= height):
            problems.append(f"{prompts.key(f'points[{i}]')}={_fmt((x, y))} lies outside {frame}: "
                            f"points are not clipped (at the edge a point names another "
                            f"object); {bounds}")  # fmt: skip
    return dataclasses.replace(prompts, boxes=boxes), problems


_LISTED = 5  # problems a refusal names before "and N more"


def refuse(problems: list[str], head: str = "") -> None:
    """Stop with all `problems` in one line (the first few, then "and N more"), after `head`
    (e.g. the prompts file); nothing when there is none."""
    if len(problems) == 1:
        raise SamexpError(f"{head}{problems[0]}")
    if problems:
        more = f"; and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
        raise SamexpError(f"{head}{len(problems)} problems, nothing was predicted: "
                          f"{'; '.join(problems[:_LISTED])}{more}")  # fmt: skip


def fit_images(
    shapes: dict[Path, tuple[int, int]],
    prompts_for: Callable[[Path], Prompts | None],
    head: str = "",
    problems: Sequence[str] = (),
) -> dict[Path, Prompts]:
    """The prompts of each image of `shapes` ((H, W) as displayed; an image `prompts_for` gives
    none is left out) fitted to its size (`fit_prompts`), before any model is built: every
    problem, after those already found (`problems`), refused in one message after `head`; the
    clipped boxes of all images said in one line."""
    fitted, wrong, outside = {}, list(problems), []
    for image, (h, w) in shapes.items():
        prompts = prompts_for(image)
        if prompts is not None:
            clipped: list[Reach] = []
            fitted[image], found = fit_prompts(prompts, image.name, h, w, clipped)
            wrong += found
            outside.append(clipped)
    refuse(wrong, head)
    say_clipped(log, "predict", "box(es)", outside)
    return fitted


def check_inside(prompts: Prompts, image: str, height: int, width: int) -> Prompts:
    """`prompts` fitted to one image (`fit_prompts`): its problems refused in one line, its
    clipped boxes said in one line."""
    outside: list[Reach] = []
    fitted, problems = fit_prompts(prompts, image, height, width, outside)
    refuse(problems)
    say_clipped(log, "predict", "box(es)", [outside])
    return fitted
