"""IoU and Dice against values computed by hand."""

from __future__ import annotations

import math

import torch

from samexp.training import metrics


def _mask(shape, *boxes):
    m = torch.zeros(shape, dtype=torch.bool)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


def test_iou_and_dice_of_overlapping_rectangles():
    pred = _mask((10, 10), (0, 4, 0, 4))  # 16 px
    target = _mask((10, 10), (2, 6, 2, 6))  # 16 px, overlap 2x2 = 4
    assert metrics.iou(pred[None], target[None]).item() == torch.tensor(4 / 28).item()
    assert math.isclose(metrics.dice(pred[None], target[None]).item(), 2 * 4 / 32, rel_tol=1e-6)


def test_perfect_and_disjoint_predictions():
    a, b = _mask((8, 8), (0, 3, 0, 3)), _mask((8, 8), (5, 8, 5, 8))
    assert metrics.iou(torch.stack([a, a]), torch.stack([a, b])).tolist() == [1.0, 0.0]
    assert metrics.dice(torch.stack([a, a]), torch.stack([a, b])).tolist() == [1.0, 0.0]


def test_empty_prediction_of_empty_target_scores_one_not_nan():
    z = torch.zeros(1, 5, 5, dtype=torch.bool)
    assert metrics.iou(z, z).item() == 1.0 and metrics.dice(z, z).item() == 1.0


def test_summarize_is_the_mean_and_nan_when_empty():
    assert metrics.summarize([0.5, 1.0]) == 0.75
    assert math.isnan(metrics.summarize([]))


def test_category_names_become_metric_keys_mlflow_accepts():
    from samexp.training.evaluation import EvalResult, metric_safe

    assert metric_safe("ring (gold)") == "ring _gold_"
    result = EvalResult(rows=[{"name": "a", "instance": 0, "category": "ring (gold)", "iou": 1.0, "dice": 1.0},
                              {"name": "a", "instance": 1, "category": "bg:x", "iou": 0.0, "dice": 0.0}])  # fmt: skip
    assert set(result.metrics("test")) == {
        "test/iou", "test/dice", "test/iou/ring _gold_", "test/dice/ring _gold_", "test/iou/bg_x", "test/dice/bg_x"
    }  # fmt: skip
