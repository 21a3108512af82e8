"""What prediction leaves on disk: 0/255 mask PNGs, JSON, and overlays (masks tinted with a cycled
palette, prompts drawn on top). Images are RGB in memory; cv2 writes BGR, so the flip lives here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samexp.config.errors import SamexpError
from samexp.data.files import shown
from samexp.predict.prompts import Prompts
from samexp.tracking.viz import overlay

POSITIVE = (0, 200, 0)  # foreground points
NEGATIVE = (220, 0, 0)  # background points


def check_palette(colors: Sequence[Sequence[int]]) -> None:
    if not colors or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
        raise SamexpError(
            f"overlay.colors={[list(c) for c in colors]} must be a non-empty list of [r, g, b] "
            "with values in 0..255"
        )


def colour(k: int, colors: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    r, g, b = colors[k % len(colors)]
    return int(r), int(g), int(b)


def mask_stats(mask: np.ndarray) -> dict[str, Any]:
    """Area in pixels and bounding box [x, y, w, h] (COCO's and SamAutomaticMaskGenerator's form)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return {"area": 0, "bbox": [0, 0, 0, 0]}
    x0, y0 = int(xs.min()), int(ys.min())
    return {"area": int(len(xs)), "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]}


def paint(
    image: np.ndarray, masks: Sequence[np.ndarray], colors: Sequence[Sequence[int]], alpha: float
) -> np.ndarray:
    """Mask k tinted (and outlined) in palette colour k; later masks paint over earlier ones."""
    out = image.copy()
    for k, mask in enumerate(masks):
        out = overlay(out, mask.astype(bool), colour(k, colors), alpha)
    return out


def draw_prompts(
    image: np.ndarray, prompts: Prompts, colors: Sequence[Sequence[int]]
) -> np.ndarray:
    """Box k outlined in mask k's colour; points as dots, green foreground / red background."""
    out = image.copy()
    width = max(1, round(max(image.shape[:2]) / 300))
    for k, (x0, y0, x1, y1) in enumerate(prompts.boxes if prompts.boxes is not None else []):
        corners = (round(x0), round(y0)), (round(x1), round(y1))
        cv2.rectangle(out, *corners, colour(k, colors), width, cv2.LINE_AA)
    radius = max(3, round(max(image.shape[:2]) / 150))
    points = prompts.points if prompts.points is not None else []
    labels = prompts.labels if prompts.labels is not None else []
    for (x, y), label in zip(points, labels, strict=True):
        centre = (round(x), round(y))
        cv2.circle(out, centre, radius + width, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, POSITIVE if label else NEGATIVE, -1, cv2.LINE_AA)
    return out


def write_image(path: Path, array: np.ndarray) -> Path:
    """Encode in memory, then write bytes: cv2.imwrite crashes on a name that is not valid UTF-8,
    and outputs are named after their input's stem."""
    ok, encoded = cv2.imencode(path.suffix, array)
    if not ok:
        raise SamexpError(f"cannot encode {shown(path)} as {path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded.tobytes())
    except OSError as exc:
        raise SamexpError(
            f"cannot write {shown(path)} ({exc.strerror}); check that the out= folder is writable"
        ) from exc
    return path


def write_rgb(path: Path, image: np.ndarray) -> Path:
    return write_image(path, np.ascontiguousarray(image[..., ::-1]))


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Single-channel PNG, 255 inside the mask and 0 outside."""
    return write_image(path, mask.astype(np.uint8) * 255)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path
