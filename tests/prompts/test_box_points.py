"""Box + points: exactly BoxPrompt's box and PointsPrompt's points, drawn in that order from one
generator; by default one positive point at the mask's centre."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.prompts.base import mask_to_box
from samexp.prompts.box import BoxPrompt
from samexp.prompts.box_points import BoxPointsPrompt
from samexp.prompts.points import PointsPrompt
from tests.prompts.conftest import check_through_seam, random_masks


def _u_masks() -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 8:56, 8:20] = masks[0, 8:56, 44:56] = masks[0, 44:56, 8:56] = True  # U: hollow box
    masks[1, 20:30, 30:50] = True
    return masks, torch.tensor([[64, 64], [60, 64]])


@pytest.mark.parametrize("train", [True, False])
def test_prompts_are_the_box_strategys_box_and_the_points_strategys_points(train):
    masks, sizes = random_masks(2)
    kwargs = dict(jitter=0.2, max_jitter_px=6.0, positive=2, negative=2, center=True)
    both = BoxPointsPrompt(**kwargs)(masks, sizes, torch.Generator().manual_seed(4), train)
    g = torch.Generator().manual_seed(4)
    box = BoxPrompt(jitter=0.2, max_jitter_px=6.0)(masks, sizes, g, train)
    points = PointsPrompt(positive=2, negative=2, center=True)(masks, sizes, g, train)
    assert torch.equal(both.boxes, box.boxes)
    assert torch.equal(both.points, points.points) and torch.equal(both.labels, points.labels)
    assert both.mask_inputs is None


def test_eval_box_is_tight_and_training_box_is_jittered():
    masks, sizes = _u_masks()
    prompt = BoxPointsPrompt(jitter=0.3)
    evaluated = prompt(masks, sizes, torch.Generator().manual_seed(0), train=False)
    trained = prompt(masks, sizes, torch.Generator().manual_seed(0), train=True)
    assert torch.equal(evaluated.boxes, mask_to_box(masks))
    assert not torch.equal(trained.boxes, evaluated.boxes)


def test_default_point_is_one_positive_at_the_deepest_point_inside_a_concave_mask():
    masks, sizes = _u_masks()
    p = BoxPointsPrompt()(masks, sizes, torch.Generator(), train=False)
    assert p.points.shape == (2, 1, 2) and p.labels.tolist() == [[1], [1]]
    x, y = p.points[0, 0].long()
    assert masks[0, y, x]  # the U's box centre (32, 32) is in its hollow


def test_points_keep_their_sides_next_to_the_box():
    for seed in range(10):
        masks, sizes = random_masks(seed)
        p = BoxPointsPrompt(positive=2, negative=2, center=False)(
            masks, sizes, torch.Generator().manual_seed(seed), train=True
        )
        x, y = p.points[..., 0].long(), p.points[..., 1].long()
        inside = masks[torch.arange(len(masks))[:, None], y, x]
        assert torch.all(inside[p.labels == 1]) and not torch.any(inside[p.labels == 0])


def test_same_seed_gives_the_same_prompts_and_another_seed_others():
    masks, sizes = random_masks(6)
    prompt = BoxPointsPrompt(positive=1, negative=1, center=False)
    a, b, c = (prompt(masks, sizes, torch.Generator().manual_seed(s), True) for s in (1, 1, 2))
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.points, b.points)
    assert not torch.equal(a.boxes, c.boxes) and not torch.equal(a.points, c.points)


def test_bad_arguments_of_either_part_are_refused_naming_the_key():
    with pytest.raises(SamexpError, match="prompt.jitter"):
        BoxPointsPrompt(jitter=-1)
    with pytest.raises(SamexpError, match="prompt.negative"):
        BoxPointsPrompt(negative=-1)


def test_box_points_prompt_runs_through_the_seam(tiny):
    check_through_seam(tiny, BoxPointsPrompt(positive=1, negative=1))
