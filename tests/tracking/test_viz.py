"""Comparison strips and overlays: shapes, dtypes, and which pixels an overlay may touch."""

from __future__ import annotations

import numpy as np

from samexp.tracking.viz import GT_COLOUR, PRED_COLOUR, comparison, overlay

TITLE = 28  # the white title bar above every panel
GAP = 4  # white columns between panels


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _box_mask(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_comparison_is_an_rgb_uint8_strip_of_four_titled_panels_at_the_requested_height():
    h, w, height = 60, 90, 120  # every panel is scaled to `height`, keeping its aspect ratio
    image = _image(h, w)
    gt = _box_mask(h, w, 10, 50, 20, 70)
    zero_shot = _box_mask(h, w, 5, 30, 10, 40)
    strip = comparison(image, gt, zero_shot, gt, 0.25, 1.0, height=height)

    panel_w = w * height // h
    assert strip.dtype == np.uint8
    assert strip.shape == (height + TITLE, 4 * panel_w + 3 * GAP, 3)
    for i in range(3):
        gap = strip[:, (i + 1) * panel_w + i * GAP : (i + 1) * (panel_w + GAP)]
        assert (gap == 255).all(), f"gap {i} is not white"
    panels = [strip[TITLE:, i * (panel_w + GAP) : i * (panel_w + GAP) + panel_w] for i in range(4)]
    # the overlays differ from the plain image, and zero-shot differs from fine-tuned (= gt here)
    assert not np.array_equal(panels[0], panels[1])
    assert not np.array_equal(panels[2], panels[3])
    assert (strip[:TITLE, :panel_w] < 255).any(), "the title bar carries a title"


def test_overlay_changes_only_mask_pixels_and_paints_the_contour_in_the_colour():
    h, w = 100, 120  # small: the contour is one pixel wide and lies on the mask's own border
    image = _image(h, w, seed=1)
    original = image.copy()
    mask = _box_mask(h, w, 20, 80, 30, 90)
    out = overlay(image, mask, PRED_COLOUR, alpha=0.5)

    assert np.array_equal(image, original), "overlay must not draw on its input"
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = (out != image).any(axis=2)
    assert not changed[~mask].any(), "pixels outside the mask changed"
    # interior: tinted halfway towards the colour
    interior = (slice(21, 79), slice(31, 89))
    expected = (image[interior].astype(np.float32) * 0.5 + np.float32(PRED_COLOUR) * 0.5).astype(
        np.uint8
    )
    assert np.array_equal(out[interior], expected)
    # border: the contour, in the colour itself
    assert (out[20, 30:90] == PRED_COLOUR).all()
    assert (out[79, 30:90] == PRED_COLOUR).all()
    assert (out[20:80, 30] == PRED_COLOUR).all()
    assert (out[20:80, 89] == PRED_COLOUR).all()


def test_overlay_of_an_empty_mask_is_the_image_unchanged():
    image = _image(40, 50)
    out = overlay(image, np.zeros((40, 50), dtype=bool), GT_COLOUR)
    assert np.array_equal(out, image)
