"""Prompt mode: the `Predictor` (stock `SamPredictor`'s interface over samexp's one image
pipeline) on the fine-tuned model (one embedding per image, all prompts decoded as one batch),
and the files each image gets: masks, overlay, JSON, comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samexp.predict.outputs import (
    draw_prompts,
    mask_stats,
    paint,
    write_json,
    write_mask,
    write_rgb,
)
from samexp.predict.predictor import Predictor
from samexp.predict.prompts import Prompts
from samexp.tracking.viz import titled_strip


@dataclass
class Prediction:
    masks: np.ndarray  # bool N×M×H×W: M = 3 candidates per prompt with multimask, else 1
    scores: np.ndarray  # float N×M, SAM's predicted IoU

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """Each prompt's highest-scoring mask (N×H×W) and its score (N)."""
        j = self.scores.argmax(1)
        n = np.arange(len(j))
        return self.masks[n, j], self.scores[n, j]


@torch.no_grad()
def predict_prompts(
    predictor: Predictor, image: np.ndarray, prompts: Prompts, multimask: bool = False
) -> Prediction:
    """All prompts of one H×W×3 RGB image through `predictor` (its model already on its device)."""
    predictor.set_image(image)
    return decode_prompts(predictor, prompts, multimask)


@torch.no_grad()
def decode_prompts(predictor: Predictor, prompts: Prompts, multimask: bool = False) -> Prediction:
    """The prompts through the decoder only, on the image `predictor` holds (set_image first)."""
    frame, device = predictor.frame, predictor.device
    boxes = coords = labels = None
    if prompts.boxes is not None:
        boxes = frame.boxes(torch.as_tensor(prompts.boxes, dtype=torch.float, device=device))
    if prompts.points is not None:
        raw = torch.as_tensor(prompts.points, dtype=torch.float, device=device)
        coords = frame.points(raw)[None].expand(prompts.count, -1, -1)
        labels = torch.as_tensor(prompts.labels, device=device)[None].expand(prompts.count, -1)
    masks, iou, _ = predictor.predict_torch(coords, labels, boxes, multimask_output=multimask)
    return Prediction(masks.cpu().numpy(), iou.float().cpu().numpy())


def _records(pred: Prediction, files: list[str] | None = None) -> list[dict[str, Any]]:
    n, m = pred.scores.shape
    return [
        {
            "prompt": k,
            "candidate": j,
            **({"file": files[k * m + j]} if files else {}),
            "score": float(pred.scores[k, j]),
            **mask_stats(pred.masks[k, j]),
        }
        for k in range(n)
        for j in range(m)
    ]


def _mask_name(stem: str, k: int, j: int, multimask: bool) -> str:
    return f"{stem}_mask{k}_{j}.png" if multimask else f"{stem}_mask{k}.png"


def panel(image: np.ndarray, pred: Prediction, prompts: Prompts, style: dict) -> np.ndarray:
    """Each prompt's best mask painted, the prompts drawn on top; `style` is {colors, alpha}."""
    return draw_prompts(paint(image, list(pred.best()[0]), **style), prompts, style["colors"])


def _title(name: str, pred: Prediction) -> str:
    scores = pred.best()[1]
    mean = f" (mean of {len(scores)})" if len(scores) > 1 else ""
    return f"{name}: pred. IoU {scores.mean():.3f}{mean}"


def write_prompted(
    out: Path,
    image_path: Path,
    image: np.ndarray,
    prompts: Prompts,
    pred: Prediction,
    multimask: bool,
    style: dict,
    zero_shot: Prediction | None = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Write one image's files; `style` is the overlay's {colors, alpha}. Returns (files, JSON)."""
    stem = image_path.stem
    n, m = pred.scores.shape
    names = [_mask_name(stem, k, j, multimask) for k in range(n) for j in range(m)]
    files = [write_mask(out / name, pred.masks[k, j]) for (k, j), name in
             zip(np.ndindex(n, m), names, strict=True)]  # fmt: skip
    files.append(write_rgb(out / f"{stem}_overlay.png", panel(image, pred, prompts, style)))
    h, w = image.shape[:2]
    info = {"image": str(image_path), "width": w, "height": h, "prompts": prompts.to_json(),
            "multimask": multimask, "masks": _records(pred, names)}  # fmt: skip
    if zero_shot is not None:
        info["zero_shot"] = _records(zero_shot)
        strip = titled_strip(
            [
                (draw_prompts(image, prompts, style["colors"]), "image"),
                (panel(image, zero_shot, prompts, style), _title("zero-shot", zero_shot)),
                (panel(image, pred, prompts, style), _title("fine-tuned", pred)),
            ],
            height=min(h, 480),
        )
        files.append(write_rgb(out / f"{stem}_compare.png", strip))
    files.append(write_json(out / f"{stem}.json", info))
    return files, info
