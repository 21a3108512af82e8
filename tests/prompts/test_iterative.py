"""Iterative prompting: each refinement adds one corrective point from the error region of the
previous prediction (positive in a miss, negative in a false alarm, -1 when nothing is wrong)."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.models.seam import Prompts
from samexp.prompts.base import mask_to_box
from samexp.prompts.iterative import IterativePrompt
from tests.prompts.conftest import check_through_seam

SIZES = torch.tensor([[48, 64]])  # 48 rows of image, 16 rows of padding


def _band(top: int, bottom: int) -> torch.Tensor:
    """1×64×64 mask of rows top..bottom-1 across the whole width."""
    masks = torch.zeros(1, 64, 64, dtype=torch.bool)
    masks[0, top:bottom] = True
    return masks


def _target() -> torch.Tensor:
    return _band(8, 40)


def _logits(predicted: torch.Tensor) -> torch.Tensor:
    """Low-res (16×16) ±10 logits whose upscaled prediction is exactly the 64×64 `predicted`:
    its rows change on 4-pixel block edges, where bilinear upscaling crosses 0 between pixels."""
    return predicted[:, None, ::4, ::4].float() * 20 - 10


def _corrections(predicted: torch.Tensor, seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    """The corrective point and its label after a box prompt, one per seed."""
    prompt, masks = IterativePrompt(), _target()
    first = Prompts(boxes=mask_to_box(masks))
    points, labels = [], []
    for seed in seeds:
        p = prompt.refine(
            first, _logits(predicted), masks, SIZES, torch.Generator().manual_seed(seed), True
        )
        points.append(p.points[0, -1])
        labels.append(p.labels[0, -1])
    return torch.stack(points), torch.stack(labels)


def _at(region: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return region[points[:, 1].long(), points[:, 0].long()]


def test_missed_foreground_gets_a_positive_point_inside_the_miss():
    predicted = _band(8, 24)  # lower half of the target missed
    points, labels = _corrections(predicted, range(30))
    assert torch.all(_at(_target()[0] & ~predicted[0], points)) and torch.all(labels == 1)


def test_false_alarm_gets_a_negative_point_inside_the_false_alarm():
    predicted = _band(8, 44)  # a band below the target, inside the image
    points, labels = _corrections(predicted, range(30))
    assert torch.all(_at(predicted[0] & ~_target()[0], points)) and torch.all(labels == 0)


def test_mixed_errors_label_each_point_by_the_kind_of_error_it_fell_in():
    predicted = _band(16, 44)  # misses rows 8..15, false alarm in rows 40..43
    points, labels = _corrections(predicted, range(60))
    error = predicted[0] ^ _target()[0]
    assert torch.all(_at(error, points))
    assert torch.equal(labels, _at(_target()[0], points).long())
    assert set(labels.tolist()) == {0, 1}


def test_no_error_gives_a_padding_point_even_if_the_padding_is_wrong():
    predicted = _target() | _band(48, 64)  # wrong only in the padding: no error in the image
    points, labels = _corrections(predicted, range(3))
    assert torch.all(labels == -1)


def test_points_accumulate_one_per_refinement_and_the_box_stays():
    masks = _target()
    prompt = IterativePrompt(start="box", iterations=3)
    p = prompt(masks, SIZES, torch.Generator().manual_seed(0), train=True)
    assert p.points is None and p.boxes.shape == (1, 4)
    wrong = _logits(torch.zeros(1, 64, 64, dtype=torch.bool))  # predicts nothing: all misses
    for n in range(1, 4):
        previous = p
        p = prompt.refine(p, wrong, masks, SIZES, torch.Generator().manual_seed(n), True)
        assert p.points.shape == (1, n, 2) and p.labels.shape == (1, n)
        assert torch.equal(p.boxes, previous.boxes)
        if n > 1:
            assert torch.equal(p.points[:, :-1], previous.points)


def test_point_start_is_one_positive_point_inside_the_mask():
    masks = _target()
    p = IterativePrompt(start="point")(masks, SIZES, torch.Generator().manual_seed(0), True)
    assert p.boxes is None and p.labels.tolist() == [[1]]
    assert _at(masks[0], p.points[0])


def test_box_start_is_jittered_in_training_only():
    masks = _target()
    prompt = IterativePrompt(start="box", jitter=0.3)
    evaluated = prompt(masks, SIZES, torch.Generator().manual_seed(0), train=False)
    trained = prompt(masks, SIZES, torch.Generator().manual_seed(0), train=True)
    assert torch.equal(evaluated.boxes, mask_to_box(masks))
    assert not torch.equal(trained.boxes, evaluated.boxes)


@pytest.mark.parametrize("feedback", [True, False])
def test_mask_feedback_passes_the_previous_logits_or_nothing(feedback):
    masks = _target()
    prompt = IterativePrompt(mask_feedback=feedback)
    p = prompt(masks, SIZES, torch.Generator(), train=False)
    logits = _logits(masks)
    refined = prompt.refine(p, logits, masks, SIZES, torch.Generator(), train=False)
    assert (refined.mask_inputs is logits) if feedback else (refined.mask_inputs is None)


def test_refinements_are_the_iterations():
    assert IterativePrompt(iterations=5).refinements == 5
    assert IterativePrompt(iterations=0).refinements == 0


def test_same_seed_gives_the_same_correction_and_another_seed_another():
    predicted = torch.zeros(1, 64, 64, dtype=torch.bool)
    a, _ = _corrections(predicted, range(5))
    b, _ = _corrections(predicted, range(5))
    c, _ = _corrections(predicted, range(5, 10))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    "kwargs, key",
    [({"start": "scribble"}, "prompt.start"), ({"iterations": -1}, "prompt.iterations")],
)
def test_bad_arguments_are_refused_naming_the_key(kwargs, key):
    with pytest.raises(SamexpError, match=key):
        IterativePrompt(**kwargs)


@pytest.mark.parametrize("start", ["box", "point"])
def test_iterative_prompt_runs_through_the_seam(tiny, start):
    passes = check_through_seam(tiny, IterativePrompt(start=start, iterations=3))
    assert len(passes) == 4
