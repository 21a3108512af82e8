"""Auto mode: the family's stock automatic mask generator (`SamAutomaticMaskGenerator`,
`SAM2AutomaticMaskGenerator`) on the fine-tuned model, and what each image
gets: one PNG per mask (binary_mask) or a COCO RLE list (coco_rle), a JSON record per mask, and
a coloured overlay."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from torch import nn

from samexp.config.schema import refuse_outside_ranges
from samexp.models.family import family_of
from samexp.predict.config import AutoConfig
from samexp.predict.outputs import mask_stats, paint, write_json, write_mask, write_rgb
from samexp.predict.predictor import Predictor

log = logging.getLogger(__name__)


def mask_generator(sam: nn.Module, cfg: AutoConfig, predictor: Predictor | None = None) -> Any:
    """The family's stock generator on `sam` with `cfg`'s arguments, refused (naming
    `auto.<key>`) when one is outside its range, before it runs; its images go through samexp's
    `predictor` (a new `Predictor` of `sam` by default; the demo gives its own, which keeps
    embeddings). The family wraps it as its generator needs (SAM 2's in a view of stock names)."""
    refuse_outside_ranges(cfg, "auto.")
    return family_of(sam).mask_generator(predictor or Predictor(sam), cfg.generator_arguments())


def generate(generator: Any, image: np.ndarray,
             max_side: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """The generator's masks of `image`; with `max_side`, generated on a copy whose longest side
    is at most that, then scaled back: masks, boxes, areas and points in the photo's pixels."""
    h, w = image.shape[:2]
    scale = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return generator.generate(image)
    # at least one pixel: a 1-pixel-high strip stays one pixel high (round would make it 0)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    return [_scaled_back(ann, h, w, scale) for ann in generator.generate(small)]


def _scaled_back(ann: dict[str, Any], h: int, w: int, scale: float) -> dict[str, Any]:
    rle = isinstance(ann["segmentation"], dict)
    small = binary(ann).astype(np.uint8)
    mask = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = dict(ann)
    out["segmentation"] = _rle(mask) if rle else mask
    out.update(mask_stats(mask))
    out["point_coords"] = [[x / scale, y / scale] for x, y in ann["point_coords"]]
    out["crop_box"] = [round(v / scale) for v in ann["crop_box"]]
    return out


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE, as SamAutomaticMaskGenerator writes it (counts as text)."""
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode()}


def binary(ann: dict[str, Any]) -> np.ndarray:
    """An annotation's mask as H×W bool, whichever output mode produced it."""
    seg = ann["segmentation"]
    return mask_utils.decode(seg).astype(bool) if isinstance(seg, dict) else seg


def paint_auto(image: np.ndarray, anns: list[dict[str, Any]], style: dict) -> np.ndarray:
    """Every mask of `anns` painted, mask k in palette colour k; `style` is {colors, alpha}."""
    masks = [binary(a) for a in anns]
    # largest first, so small masks stay visible on top; colours still follow mask numbers
    order = sorted(range(len(anns)), key=lambda k: -anns[k]["area"])
    colors = [style["colors"][k % len(style["colors"])] for k in order]
    return paint(image, [masks[k] for k in order], colors, style["alpha"])


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
    files.append(write_rgb(out / f"{stem}_auto_overlay.png", paint_auto(image, anns, style)))
    files.append(write_json(out / f"{stem}_auto.json", records))
    return files
