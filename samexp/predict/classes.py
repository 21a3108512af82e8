"""Classes mode: every class the model learned a prompt for (prompt=class_tokens), segmented with
no prompt given. One encoder pass per image, then one decoder pass for all its classes.

Each image gets a class-id PNG (0 = no class, k = the k-th line of `classes.txt`, which is
written beside them: the output folder is itself a label-map dataset), a coloured overlay with a
legend, and a JSON of each class's area, box and predicted IoU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from samexp.config.errors import SamexpError
from samexp.models.seam import Prompts, decode, mask_threshold
from samexp.predict.outputs import colour, mask_stats, paint, write_image, write_json, write_rgb
from samexp.predict.predictor import Predictor
from samexp.prompts.class_tokens import ClassPrompts, class_prompts_of

BACKGROUND = "_background_"  # id 0 in classes.txt, as LabelMe names it


def learned_classes(predictor: Predictor) -> ClassPrompts:
    module = class_prompts_of(predictor.model)
    if module is None:
        raise SamexpError(
            "mode=classes needs weights trained with prompt=class_tokens; these hold no class "
            "prompts (use mode=prompt with a box or points, or mode=auto)"
        )
    return module


@torch.no_grad()
def predict_classes(predictor: Predictor, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H×W class ids (0: none; k: class k-1) and each class's predicted IoU, for an RGB image.

    A pixel takes the class with the highest logit among those above SAM's mask threshold.
    """
    predictor.set_image(image)
    return decode_classes(predictor)


@torch.no_grad()
def decode_classes(predictor: Predictor) -> tuple[np.ndarray, np.ndarray]:
    """`predict_classes` through the decoder only, on the image `predictor` holds."""
    module = learned_classes(predictor)
    sam = predictor.model
    k = len(module.classes)
    owner = torch.zeros(k, dtype=torch.long, device=predictor.device)
    low_res, iou = decode(sam, predictor.features, owner, Prompts(sparse=module.tokens))
    logits = predictor.frame.logits(low_res)[:, 0]
    best, index = logits.max(0)
    ids = torch.where(best > mask_threshold(sam), index + 1, 0)
    return ids.cpu().numpy(), iou[:, 0].float().cpu().numpy()


def write_class_list(out: Path, classes: list[str]) -> Path:
    """`classes.txt` (`id name`, 0 the background) beside the class-id PNGs."""
    lines = [f"0 {BACKGROUND}", *(f"{i} {name}" for i, name in enumerate(classes, start=1))]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "classes.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_classes(out: Path, image_path: Path, image: np.ndarray, ids: np.ndarray,
                  scores: np.ndarray, classes: list[str], style: dict) -> list[Path]:  # fmt: skip
    """One image's class-id PNG, overlay with legend and JSON; returns the files written."""
    stem = image_path.stem
    depth = np.uint8 if len(classes) < 256 else np.uint16
    files = [write_image(out / f"{stem}_classes.png", ids.astype(depth))]
    masks = [ids == k + 1 for k in range(len(classes))]
    present = [k for k, mask in enumerate(masks) if mask.any()]
    files.append(
        write_rgb(out / f"{stem}_overlay.png", paint_classes(image, masks, classes, style))
    )
    h, w = image.shape[:2]
    info: dict[str, Any] = {
        "image": str(image_path), "width": w, "height": h, "classes_png": files[0].name,
        "classes": [{"id": k + 1, "name": classes[k], "predicted_iou": float(scores[k]),
                     **mask_stats(masks[k])} for k in present],
    }  # fmt: skip
    files.append(write_json(out / f"{stem}.json", info))
    return files


def paint_classes(image: np.ndarray, masks: list[np.ndarray], classes: list[str],
                  style: dict) -> np.ndarray:  # fmt: skip
    """Class k in palette colour k (the same in every image), with a legend of the classes found
    and their share of the image."""
    areas = [int(m.sum()) for m in masks]
    painted = paint(image, masks, **style)
    entries = [(classes[k], colour(k, style["colors"]), area / image.shape[0] / image.shape[1])
               for k, area in enumerate(areas) if area]  # fmt: skip
    return with_legend(painted, entries)


def with_legend(
    image: np.ndarray, entries: list[tuple[str, tuple[int, int, int], float]]
) -> np.ndarray:
    """`image` with a white panel on its right: a colour swatch, name and share of the image per
    class found (or "no class found")."""
    h = image.shape[0]
    font, size = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, min(0.8, h / 800))
    lines = [(f"{name}  {share:.1%}", rgb) for name, rgb, share in entries] or [
        ("no class found", None)
    ]
    (_, text_h), base = cv2.getTextSize("Ag", font, size, 1)
    swatch, pad = text_h + base, 6
    row = swatch + pad
    widths = [cv2.getTextSize(text, font, size, 1)[0][0] for text, _ in lines]
    width = pad + swatch + pad + max(widths) + pad
    panel = np.full((max(h, pad + row * len(lines)), width, 3), 255, dtype=np.uint8)
    for i, (text, rgb) in enumerate(lines):
        top = pad + i * row
        if rgb is not None:
            cv2.rectangle(panel, (pad, top), (pad + swatch - 1, top + swatch - 1), rgb, -1)
        cv2.putText(panel, text, (pad + swatch + pad, top + text_h), font, size, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
    if panel.shape[0] > h:  # more classes than the image is tall: pad the image below
        image = np.vstack([image, np.full((panel.shape[0] - h, *image.shape[1:]), 255, np.uint8)])
    return np.hstack([image, panel])
