"""IoU and Dice of binary masks, per instance (MONAI's implementations; an empty-vs-empty pair scores 1)."""

from __future__ import annotations

import torch

# MONAI is imported where it is used: `import monai` takes ~2 s (it loads its apps, handlers and
# mlflow), which every command would pay before it can even say a config value is wrong.


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred, target: N×H×W (bool or 0/1) -> N IoUs."""
    from monai.metrics import compute_iou

    return compute_iou(_nchw(pred), _nchw(target), ignore_empty=False)[:, 0]


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from monai.metrics import compute_dice

    return compute_dice(_nchw(pred), _nchw(target), ignore_empty=False)[:, 0]


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return t.float().unsqueeze(1)


def summarize(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
