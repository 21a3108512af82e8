"""SAM's training loss: a MONAI mask loss plus an optional MSE on the predicted-IoU head.

Returns the total and its named parts so every part can be logged (`train/loss/mask`, ...).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from samexp.config.checks import NON_NEGATIVE
from samexp.config.options import option
from samexp.training.metrics import iou


@option("loss", "sam")
class SamLoss(nn.Module):
    def __init__(
        self,
        mask_loss: nn.Module,  # a MONAI loss, built by its own _target_
        # weight of the MSE between SAM's predicted IoU and the true IoU
        iou_head_weight: Annotated[float, NON_NEGATIVE] = 0.0,
    ) -> None:
        super().__init__()
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
