"""Pictures people would rather look at than read: image | ground truth | zero-shot | fine-tuned."""

from __future__ import annotations

import cv2
import numpy as np

from samexp.data.base import Sample

GT_COLOUR = (46, 204, 113)
PRED_COLOUR = (52, 152, 219)


def original_frame(sample: Sample) -> np.ndarray:
    """The image as the model saw it (EXIF-oriented, decoded by the dataset) at its original size,
    so overlays line up with `gt_masks` whatever the format did to the file's pixels."""
    h, w = sample.input_size
    image = sample.image[:, :h, :w].permute(1, 2, 0).numpy()
    height, width = sample.original_size
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def overlay(
    image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5
) -> np.ndarray:
    """Tint the mask's pixels and outline it, so thin and small objects stay visible."""
    out = image.copy()
    tint = np.array(colour, dtype=np.float32)
    out[mask] = (out[mask].astype(np.float32) * (1 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(image.shape[:2]) / 300))
    cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def _titled(panel: np.ndarray, title: str, height: int) -> np.ndarray:
    scale = height / panel.shape[0]
    panel = cv2.resize(
        panel, (max(1, round(panel.shape[1] * scale)), height), interpolation=cv2.INTER_AREA
    )
    bar = np.full((28, panel.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, panel])


def titled_strip(panels: list[tuple[np.ndarray, str]], height: int = 320) -> np.ndarray:
    """RGB panels side by side at a common height, each under its title, white gaps between."""
    titled = [_titled(panel, title, height) for panel, title in panels]
    gap = np.full((height + 28, 4, 3), 255, dtype=np.uint8)
    row = []
    for p in titled:
        row += [p, gap]
    return np.hstack(row[:-1])


def comparison(
    image: np.ndarray,
    gt: np.ndarray,
    zero_shot: np.ndarray,
    fine_tuned: np.ndarray,
    iou_zero_shot: float,
    iou_fine_tuned: float,
    height: int = 320,
) -> np.ndarray:
    """One RGB strip of four panels at a common height, each with its title and IoU."""
    return titled_strip(
        [
            (image, "image"),
            (overlay(image, gt, GT_COLOUR), "ground truth"),
            (overlay(image, zero_shot, PRED_COLOUR), f"zero-shot IoU {iou_zero_shot:.3f}"),
            (overlay(image, fine_tuned, PRED_COLOUR), f"fine-tuned IoU {iou_fine_tuned:.3f}"),
        ],
        height,
    )
