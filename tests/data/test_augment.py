"""Augmentation moves image and masks together and never touches the masks' values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.data.augment import Augment
from samexp.data.base import make_sample
from samexp.data.frame import Pipeline


def _pair():
    image = np.zeros((40, 60, 3), np.uint8)
    image[5:15, 5:25] = 255  # a bright block exactly where mask 0 is
    masks = np.zeros((2, 40, 60), bool)
    masks[0, 5:15, 5:25] = True
    masks[1, 20:30, 30:50] = True
    return image, masks


@pytest.mark.parametrize("seed", range(10))
def test_geometric_augmentation_moves_image_and_masks_together(seed):
    torch.manual_seed(seed)
    image, masks = _pair()
    aug = Augment(
        hflip=0.5,
        vflip=0.5,
        crop=1.0,
        crop_scale=[0.4, 1.0],
        brightness=0,
        contrast=0,
        saturation=0,
    )
    out_image, out_masks = aug(image, masks)
    assert out_image.shape == image.shape and out_masks.shape == masks.shape
    assert out_masks.dtype == bool
    bright = out_image[..., 0] > 127
    # nearest for masks, antialiased for the image: allow a one-pixel rim of disagreement
    assert (bright ^ out_masks[0]).sum() <= 2 * (out_masks[0].shape[0] + out_masks[0].shape[1])


def test_horizontal_flip_mirrors_both():
    image, masks = _pair()
    out_image, out_masks = Augment(hflip=1.0, crop=0, brightness=0, contrast=0, saturation=0)(
        image, masks
    )
    assert np.array_equal(out_masks, masks[:, :, ::-1]) and np.array_equal(
        out_image, image[:, ::-1]
    )


def test_colour_jitter_changes_the_image_but_not_the_masks():
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    masks = np.zeros((1, 30, 30), bool)
    masks[0, 3:9, 3:9] = True
    out_image, out_masks = Augment(hflip=0, crop=0, brightness=0.5, contrast=0.5)(image, masks)
    assert not np.array_equal(out_image, image) and np.array_equal(out_masks, masks)


def test_instances_cropped_away_are_dropped_and_never_all():
    image, masks = _pair()

    def crop_to_top_left(img, m):  # keeps instance 0 only
        return img[:16, :26], m[:, :16, :26]

    sample = make_sample(
        "x", "x.png", image, masks, Pipeline(64), categories=["a", "b"], transform=crop_to_top_left
    )
    assert len(sample.masks) == 1 and sample.categories == ["a"]

    def crop_to_nothing(img, m):
        return img[30:, :5], m[:, 30:, :5]

    sample = make_sample("x", "x.png", image, masks, Pipeline(64), transform=crop_to_nothing)
    assert len(sample.masks) == 2 and sample.original_size == (40, 60)  # fell back to un-augmented


@pytest.mark.parametrize("kwargs", [{"hflip": 2}, {"crop": -0.1}, {"crop_scale": [0.8, 0.5]}])
def test_bad_augmentation_values_are_refused(kwargs):
    with pytest.raises(SamexpError, match="augment"):
        Augment(**kwargs)
