"""IoU and Dice of binary masks, per instance (MONAI's implementations; an empty-vs-empty pair scores 1)."""

from __future__ import annotations

import torch
from monai.metrics import compute_dice, compute_iou


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target: N×H×W (bool or 0/1) -> N IoUs."""
    return compute_iou(_nchw(pred), _nchw(target), ignore_empty=False)[:, 0]


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return compute_dice(_nchw(pred), _nchw(target), ignore_empty=False)[:, 0]


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.float().unsqueeze(1)


def summarize(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
