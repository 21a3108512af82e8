"""Specifications for the one image pipeline (`samexp.data.frame`): SAM's resize/pad geometry,
byte for byte what stock `ResizeLongestSide` / `Sam.postprocess_masks` compute, prompts into the
frame and masks back out of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.transforms import ResizeLongestSide

from samexp.config.errors import DatasetError
from samexp.data.frame import (
    Frame,
    check_fits,
    pad_to_square,
    resize_longest_side,
    resize_mask_longest_side,
    to_model_input,
)


@pytest.mark.parametrize("shape", [(243, 208), (1080, 1920), (30, 40), (256, 256), (100, 7)])
def test_resize_makes_longest_side_exactly_size_and_keeps_aspect(shape: tuple[int, int]) -> None:
    h, w = shape
    image = np.zeros((h, w, 3), dtype=np.uint8)
    out = resize_longest_side(image, 256)
    assert max(out.shape[:2]) == 256 and out.shape[2] == 3 and out.dtype == np.uint8
    assert abs(out.shape[0] - h * 256 / max(h, w)) <= 1
    assert abs(out.shape[1] - w * 256 / max(h, w)) <= 1


def test_resized_mask_lands_on_the_same_grid_as_the_image() -> None:
    image = np.zeros((243, 208, 3), dtype=np.uint8)
    mask = np.zeros((243, 208), dtype=bool)
    assert resize_mask_longest_side(mask, 256).shape == resize_longest_side(image, 256).shape[:2]


def test_resized_mask_is_bool_and_keeps_a_thin_band_when_enlarging() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[10, :] = True  # one pixel high: nearest-neighbour-free resizing must not lose it
    out = resize_mask_longest_side(mask, 256)
    assert out.dtype == bool
    assert out.any(axis=0).all()


def test_resized_mask_keeps_area_fraction_when_shrinking() -> None:
    mask = np.zeros((1080, 1920), dtype=bool)
    mask[200:800, 300:1500] = True
    out = resize_mask_longest_side(mask, 256)
    assert out.mean() == pytest.approx(mask.mean(), abs=0.01)


def test_pad_to_square_zero_pads_bottom_right_and_keeps_content_and_dtype() -> None:
    t = torch.full((3, 5, 7), 9, dtype=torch.uint8)
    out = pad_to_square(t, 8)
    assert out.shape == (3, 8, 8) and out.dtype == torch.uint8
    assert (out[:, :5, :7] == 9).all()
    assert (out[:, 5:, :] == 0).all() and (out[:, :, 7:] == 0).all()


def test_pad_to_square_works_for_bool_masks() -> None:
    out = pad_to_square(torch.ones(2, 4, 3, dtype=torch.bool), 6)
    assert out.dtype == torch.bool and out.sum() == 2 * 4 * 3


def test_pad_to_square_refuses_input_larger_than_size() -> None:
    with pytest.raises(ValueError, match="resize first"):
        pad_to_square(torch.zeros(1, 9, 3), 8)


@pytest.mark.parametrize("shape", [(243, 208), (1080, 1920), (30, 40), (100, 7), (512, 384)])
def test_the_resize_is_stock_sams_byte_for_byte(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        resize_longest_side(image, 256), ResizeLongestSide(256).apply_image(image)
    )


def test_the_model_input_is_the_resized_image_zero_padded_with_its_frame() -> None:
    image = np.random.default_rng(0).integers(0, 256, (243, 208, 3), dtype=np.uint8)
    model_input, frame = to_model_input(image, 256)
    assert model_input.shape == (3, 256, 256) and model_input.dtype == torch.uint8
    assert frame == Frame(256, (256, 219), (243, 208)) == Frame.of(243, 208, 256)
    h, w = frame.input_size
    np.testing.assert_array_equal(model_input[:, :h, :w].permute(1, 2, 0).numpy(),
                                  resize_longest_side(image, 256))  # fmt: skip
    assert not model_input[:, h:].any() and not model_input[:, :, w:].any()


def test_prompts_enter_the_frame_as_stock_sam_moves_them() -> None:
    frame, stock = Frame.of(243, 208, 256), ResizeLongestSide(256)
    boxes = torch.tensor([[10.0, 20.5, 200, 240], [0, 0, 207, 242]])
    points = torch.tensor([[[3.0, 4.0], [100.5, 7.25]]])
    assert torch.equal(frame.boxes(boxes), stock.apply_boxes_torch(boxes, (243, 208)))
    assert torch.equal(frame.points(points), stock.apply_coords_torch(points, (243, 208)))


def test_masks_leave_the_frame_as_sam_postprocess_masks_brings_them_back(tiny) -> None:
    frame = Frame.of(243, 208, 256)
    low_res = torch.randn(3, 2, 64, 64, generator=torch.Generator().manual_seed(0))
    stock = tiny.sam.postprocess_masks(low_res, frame.input_size, frame.original_size)
    assert torch.equal(frame.logits(low_res), stock)
    assert torch.equal(frame.masks(low_res, tiny.sam.mask_threshold), stock > 0)


def test_an_image_too_thin_for_the_input_size_is_refused_naming_it() -> None:
    with pytest.raises(DatasetError, match=r"thin.png is 20000×1 pixels.*shorter side"):
        check_fits("thin.png", 1, 20000, 256)
    check_fits("fine.png", 1, 512, 256)  # half a pixel high rounds up to one: it fits
