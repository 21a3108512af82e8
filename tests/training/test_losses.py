"""SamLoss: MONAI's mask losses on SAM logits, plus the IoU-head MSE, on hand-checked inputs."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss

from samexp.config.errors import SamexpError
from samexp.training.losses import SamLoss

BIG = 20.0  # logit whose sigmoid is 1 to within 2e-9


def _target() -> torch.Tensor:
    t = torch.zeros(1, 4, 4, dtype=torch.bool)
    t[0, :2] = True  # 8 of 16 pixels
    return t


def test_dice_loss_is_zero_for_a_perfect_prediction_and_near_one_for_the_inverse():
    loss = SamLoss(DiceLoss(sigmoid=True))
    target = _target()
    perfect = torch.where(target, BIG, -BIG).unsqueeze(1)
    total, parts = loss(perfect, target, torch.ones(1, 1))
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    inverse, _ = loss(-perfect, target, torch.ones(1, 1))
    assert inverse.item() == pytest.approx(1.0, abs=1e-4)
    assert set(parts) == {"mask"}


def test_dice_ce_of_zero_logits_is_half_dice_plus_log2():
    # sigmoid(0) = 0.5 everywhere: dice = 1 - 2*(0.5*8)/(0.5*16 + 8) = 0.5 (MONAI smooth terms 1e-5), BCE = ln 2
    total, _ = SamLoss(DiceCELoss(sigmoid=True))(
        torch.zeros(1, 1, 4, 4), _target(), torch.zeros(1, 1)
    )
    assert total.item() == pytest.approx(0.5 + math.log(2), abs=1e-4)


def test_dice_focal_is_below_dice_ce_on_easy_pixels():
    logits = torch.where(_target(), 3.0, -3.0).unsqueeze(1)
    ce, _ = SamLoss(DiceCELoss(sigmoid=True))(logits, _target(), torch.zeros(1, 1))
    focal, _ = SamLoss(DiceFocalLoss(sigmoid=True))(logits, _target(), torch.zeros(1, 1))
    assert focal < ce  # focal down-weights confident pixels


def test_iou_head_term_is_weighted_mse_against_the_true_iou():
    target = _target()
    logits = torch.where(target, BIG, -BIG).unsqueeze(1)
    logits[0, 0, 0, :] = -BIG  # predict 4 of the 8 target pixels: true IoU = 0.5
    loss = SamLoss(DiceLoss(sigmoid=True), iou_head_weight=2.0)
    total, parts = loss(logits, target, torch.tensor([[0.9]]))
    assert parts["iou_head"].item() == pytest.approx((0.9 - 0.5) ** 2)
    assert total.item() == pytest.approx(parts["mask"].item() + 2.0 * 0.16, abs=1e-5)


def test_iou_head_target_carries_no_gradient_to_the_mask_logits():
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    iou_pred = torch.tensor([[0.3]], requires_grad=True)
    _, parts = SamLoss(DiceLoss(sigmoid=True), iou_head_weight=1.0)(logits, _target(), iou_pred)
    parts["iou_head"].backward()
    assert logits.grad is None and iou_pred.grad is not None


def test_negative_iou_weight_is_refused():
    with pytest.raises(SamexpError, match="iou_head_weight"):
        SamLoss(DiceLoss(sigmoid=True), iou_head_weight=-1)
