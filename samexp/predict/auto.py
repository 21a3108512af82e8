"""Auto mode: the stock `SamAutomaticMaskGenerator` on the fine-tuned model, and what each image
gets: one PNG per mask (binary_mask) or a COCO RLE list (coco_rle), a JSON record per mask, and
a coloured overlay."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam

from samexp.errors import SamexpError
from samexp.predict.config import AutoConfig, AutoOutput
from samexp.predict.outputs import paint, write_json, write_mask, write_rgb

log = logging.getLogger(__name__)


def check_auto(cfg: AutoConfig) -> None:
    """Refuse knobs SamAutomaticMaskGenerator would misread, before any model is built."""
    if cfg.points_per_side < 1:
        raise SamexpError(f"auto.points_per_side={cfg.points_per_side} must be >= 1")
    for key in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            raise SamexpError(f"auto.{key}={getattr(cfg, key)} must be in [0, 1]")


def mask_generator(sam: Sam, cfg: AutoConfig) -> SamAutomaticMaskGenerator:
    check_auto(cfg)
    return SamAutomaticMaskGenerator(
        sam,
        points_per_side=cfg.points_per_side,
        pred_iou_thresh=cfg.pred_iou_thresh,
        stability_score_thresh=cfg.stability_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        min_mask_region_area=cfg.min_mask_region_area,
        output_mode=AutoOutput(cfg.output_mode).value,
    )


def binary(ann: dict[str, Any]) -> np.ndarray:
    """An annotation's mask as H×W bool, whichever output mode produced it."""
    seg = ann["segmentation"]
    return mask_utils.decode(seg).astype(bool) if isinstance(seg, dict) else seg


def write_auto(
    out: Path, image_path: Path, image: np.ndarray, anns: list[dict[str, Any]], style: dict
) -> list[Path]:
    """Mask k is `anns[k]`; PNG masks go to `<stem>_auto/`, RLEs stay in `<stem>_auto.json`."""
    stem = image_path.stem
    files, records = [], []
    for k, ann in enumerate(anns):
        record = dict(ann)
        if not isinstance(ann["segmentation"], dict):  # binary_mask: the JSON points at the PNG
            path = write_mask(out / f"{stem}_auto" / f"mask_{k}.png", record.pop("segmentation"))
            files.append(path)
            record["mask"] = str(path.relative_to(out))
        records.append(record)
    masks = [binary(a) for a in anns]
    # largest first, so small masks stay visible on top; colours still follow mask numbers
    order = sorted(range(len(anns)), key=lambda k: -anns[k]["area"])
    colors = [style["colors"][k % len(style["colors"])] for k in order]
    overlay = paint(image, [masks[k] for k in order], colors, style["alpha"])
    files.append(write_rgb(out / f"{stem}_auto_overlay.png", overlay))
    files.append(write_json(out / f"{stem}_auto.json", records))
    return files
