"""SAM's training loss: a MONAI mask loss plus an optional MSE on the predicted-IoU head.

Returns the total and its named parts so every part can be logged (`train/loss/mask`, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samexp.errors import SamexpError
from samexp.metrics import iou


class SamLoss(nn.Module):
    def __init__(self, mask_loss: nn.Module, iou_head_weight: float = 0.0) -> None:
        super().__init__()
        if iou_head_weight < 0:
            raise SamexpError(f"loss.iou_head_weight must be >= 0, got {iou_head_weight}")
        self.mask_loss = mask_loss
        self.iou_head_weight = iou_head_weight

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """logits N×1×H×W, target N×H×W bool, iou_pred N×1."""
        mask = self.mask_loss(logits, target.unsqueeze(1).float())
        parts = {"mask": mask}
        total = mask
        if self.iou_head_weight > 0:
            true_iou = iou(logits.detach()[:, 0] > 0, target)
            iou_loss = F.mse_loss(iou_pred[:, 0], true_iou)
            parts["iou_head"] = iou_loss
            total = total + self.iou_head_weight * iou_loss
        return total, parts
