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

    def min_over_candidates(
        self, logits: torch.Tensor, target: torch.Tensor, iou_pred: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """logits N×C×H×W (SAM's C candidate masks): per instance, the loss of its best candidate.

        Losses are computed per (instance, candidate) so that the choice is the true minimum of the
        configured loss, not a proxy; N×C small decoder-sized terms are cheap next to the encoder.
        """
        n, c = logits.shape[:2]
        per = [
            [
                self(
                    logits[i : i + 1, j : j + 1], target[i : i + 1], iou_pred[i : i + 1, j : j + 1]
                )
                for j in range(c)
            ]
            for i in range(n)
        ]
        chosen = [min(row, key=lambda lp: lp[0].item()) for row in per]
        total = torch.stack([loss for loss, _ in chosen]).mean()
        parts = {k: torch.stack([p[k] for _, p in chosen]).mean() for k in chosen[0][1]}
        return total, parts
