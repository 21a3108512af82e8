"""Box prompts: tight around the mask, jitter bounded and seeded, none at eval."""

from __future__ import annotations

import torch

from samexp.prompts.base import mask_to_box
from samexp.prompts.box import BoxPrompt


def _masks() -> torch.Tensor:
    m = torch.zeros(2, 64, 64, dtype=torch.bool)
    m[0, 10:20, 5:40] = True  # rows 10..19, cols 5..39
    m[1, 30:31, 50:51] = True  # a single pixel
    return m


SIZES = torch.tensor([[64, 64], [64, 64]])


def test_box_is_tight_around_the_mask():
    assert mask_to_box(_masks()).tolist() == [[5, 10, 39, 19], [50, 30, 50, 30]]


def test_empty_mask_gets_the_whole_frame_instead_of_crashing():
    assert mask_to_box(torch.zeros(1, 8, 6, dtype=torch.bool)).tolist() == [[0, 0, 5, 7]]


def test_eval_prompts_are_the_tight_boxes_whatever_the_generator():
    prompt = BoxPrompt(jitter=0.5)
    a = prompt(_masks(), SIZES, torch.Generator().manual_seed(0), train=False)
    b = prompt(_masks(), SIZES, torch.Generator().manual_seed(99), train=False)
    assert torch.equal(a.boxes, mask_to_box(_masks())) and torch.equal(a.boxes, b.boxes)
    assert a.points is None and a.mask_inputs is None


def test_training_jitter_is_bounded_by_fraction_and_pixels_and_stays_in_the_image():
    masks = torch.zeros(200, 64, 64, dtype=torch.bool)
    masks[:, 10:50, 20:30] = True  # box 20..29 x 10..49: sides 9 and 39
    sizes = torch.tensor([[60, 64]] * 200)
    prompt = BoxPrompt(jitter=0.2, max_jitter_px=5)
    boxes = prompt(masks, sizes, torch.Generator().manual_seed(0), train=True).boxes
    tight = mask_to_box(masks)
    shift = (boxes - tight).abs()
    assert torch.all(shift[:, [0, 2]] <= 0.2 * 9 + 1e-5)  # x sides: 20% of 9 px
    assert torch.all(shift[:, [1, 3]] <= 5 + 1e-5)  # y sides: capped at 5 px, not 20% of 39
    assert shift.max() > 0
    assert torch.all(boxes >= 0) and torch.all(boxes[:, 3] <= 59)  # 60 rows: never into the padding
    assert torch.all(boxes[:, 0] <= boxes[:, 2]) and torch.all(boxes[:, 1] <= boxes[:, 3])


def test_jitter_is_reproducible_per_seed():
    prompt = BoxPrompt(jitter=0.3)
    a = prompt(_masks(), SIZES, torch.Generator().manual_seed(7), train=True).boxes
    b = prompt(_masks(), SIZES, torch.Generator().manual_seed(7), train=True).boxes
    c = prompt(_masks(), SIZES, torch.Generator().manual_seed(8), train=True).boxes
    assert torch.equal(a, b) and not torch.equal(a, c)
