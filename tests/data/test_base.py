"""Specifications for the shared data layer: reading, samples and batches (the resize/pad geometry:
test_frame.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from samexp.config.errors import DatasetError
from samexp.data.base import Batch, collate, make_sample, read_image_rgb
from samexp.data.frame import Pipeline
from samexp.data.orientation import apply_orientation, exif_orientation, mask_orientation


def test_read_image_rgb_expands_grayscale_to_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    rgb = read_image_rgb(tmp_path / "g.png")
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


def test_read_image_rgb_returns_rgb_order_not_cv2_bgr(tmp_path: Path) -> None:
    Image.new("RGB", (4, 3), (200, 100, 10)).save(tmp_path / "c.png")
    assert read_image_rgb(tmp_path / "c.png")[0, 0].tolist() == [200, 100, 10]


def test_read_image_rgb_drops_alpha(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 3), (200, 100, 10, 0)).save(tmp_path / "a.png")
    rgb = read_image_rgb(tmp_path / "a.png")
    assert rgb.shape == (3, 4, 3)
    assert rgb[0, 0].tolist() == [200, 100, 10]


def test_read_image_rgb_scales_16_bit_to_8_bit(tmp_path: Path) -> None:
    deep = np.zeros((3, 4, 3), dtype=np.uint16)
    deep[0, 0] = 65535
    deep[0, 1] = 257 * 100
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    rgb = read_image_rgb(tmp_path / "d.png")
    assert rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [100, 100, 100]
    assert rgb[1, 1].tolist() == [0, 0, 0]


def test_read_image_rgb_unreadable_file_raises_dataset_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match="garbage.png"):
        read_image_rgb(bad)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("channels", [0, 3])
def test_apply_orientation_matches_pil_exif_transpose(orientation: int, channels: int) -> None:
    shape = (3, 5, channels) if channels else (3, 5)
    array = np.random.default_rng(orientation).integers(0, 256, shape, dtype=np.uint8)
    image = Image.fromarray(array)
    image.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))
    out = apply_orientation(array, orientation)
    assert out.shape == expected.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)
    if orientation >= 5:
        assert out.shape[:2] == (5, 3)  # PIL really turned it: the comparison is not vacuous


def test_apply_orientation_refuses_values_outside_1_to_8() -> None:
    with pytest.raises(ValueError, match="1-8"):
        apply_orientation(np.zeros((2, 2)), 9)


def test_exif_orientation_reads_the_tag_and_defaults_to_1(tmp_path: Path) -> None:
    Image.new("RGB", (4, 3)).save(tmp_path / "turned.jpg", exif=_exif(6))
    Image.new("RGB", (4, 3)).save(tmp_path / "plain.png")
    (tmp_path / "garbage.jpg").write_bytes(b"not an image")
    assert exif_orientation(tmp_path / "turned.jpg") == 6
    assert exif_orientation(tmp_path / "plain.png") == 1
    assert exif_orientation(tmp_path / "garbage.jpg") == 1
    assert exif_orientation(tmp_path / "missing.jpg") == 1


def test_read_image_rgb_applies_exif_orientation_only_when_asked(tmp_path: Path) -> None:
    pixels = np.zeros((30, 40, 3), dtype=np.uint8)
    pixels[:10, :10] = 255  # top-left as stored
    Image.fromarray(pixels).save(tmp_path / "p.jpg", exif=_exif(6), quality=95)
    assert read_image_rgb(tmp_path / "p.jpg").shape == (30, 40, 3)  # as stored (cv2 ignores EXIF)
    shown = read_image_rgb(tmp_path / "p.jpg", orient=True)
    assert shown.shape == (40, 30, 3)
    assert shown[:10, -10:].mean() > 200 and shown[:10, :10].mean() < 50  # turned clockwise


@pytest.mark.parametrize(
    ("mask_shape", "expected"), [((30, 40), 6), ((40, 30), 1)], ids=["stored", "displayed"]
)
def test_mask_orientation_follows_the_size_the_mask_was_drawn_at(
    mask_shape: tuple[int, int], expected: int
) -> None:
    assert mask_orientation("i.jpg", (30, 40), 6, "m.png", mask_shape) == expected


def test_mask_orientation_mismatch_names_stored_and_displayed_sizes() -> None:
    with pytest.raises(DatasetError) as err:
        mask_orientation("img/i.jpg", (30, 40), 6, "lab/m.png", (30, 41), kind="label")
    message = str(err.value)
    assert "img/i.jpg" in message and "lab/m.png" in message and "label" in message
    assert "40×30 (W×H) as stored" in message and "30×40 as displayed" in message
    assert "41×30" in message


PADDED = Pipeline(64)  # SAM's geometry: longest side 64, zero-padded bottom/right


def _sample(name: str, shape: tuple[int, int], k: int, pipeline: Pipeline = PADDED):
    """A grey image whose K masks all cover its top-left quarter."""
    image = np.full((*shape, 3), 200, dtype=np.uint8)
    masks = np.zeros((k, *shape), dtype=bool)
    masks[:, : shape[0] // 2, : shape[1] // 2] = True
    return make_sample(name, f"/data/{name}.png", image, masks, pipeline)


def test_make_sample_frames_image_and_masks_like_sam() -> None:
    s = _sample("a", (30, 40), k=2)
    assert s.image.shape == (3, 64, 64) and s.image.dtype == torch.uint8
    assert s.masks.shape == (2, 64, 64) and s.masks.dtype == torch.bool
    assert s.gt_masks.shape == (2, 30, 40) and s.gt_masks.dtype == torch.bool
    assert s.original_size == (30, 40) and s.input_size == (48, 64)
    h, w = s.input_size
    assert (s.image[:, :h, :w] == 200).all()  # uint8, not normalised: the model normalises
    assert (s.image[:, h:, :] == 0).all() and not s.masks[:, h:, :].any()


def test_a_stretching_pipeline_resizes_image_and_masks_to_the_full_square() -> None:
    s = _sample("a", (60, 90), k=1, pipeline=Pipeline(64, stretch=True))  # SAM 2's geometry
    assert s.image.shape == (3, 64, 64) and s.masks.shape == (1, 64, 64)
    assert s.input_size == (64, 64) and s.original_size == (60, 90)
    assert s.gt_masks.shape == (1, 60, 90)  # metrics still compare at the original resolution
    assert (s.image == 200).all()  # no zero padding: the image fills the whole square
    # the image's top-left quarter is the square's, not the 43-row band padding would keep
    assert s.masks[0, :32, :32].all() and s.masks[0].sum() == 32 * 32


def test_make_sample_rejects_masks_of_another_size_naming_the_image() -> None:
    with pytest.raises(DatasetError, match="/data/x.png"):
        make_sample(
            "x", "/data/x.png", np.zeros((30, 40, 3), np.uint8), np.ones((1, 30, 41)), PADDED
        )


def test_make_sample_rejects_zero_instances() -> None:
    with pytest.raises(DatasetError, match="K ≥ 1"):
        make_sample(
            "x", "/data/x.png", np.zeros((30, 40, 3), np.uint8), np.ones((0, 30, 40)), PADDED
        )


def test_collate_flattens_instances_in_image_order_and_keeps_original_sizes() -> None:
    batch = collate([_sample("a", (30, 40), k=2), _sample("b", (50, 20), k=1)])
    assert isinstance(batch, Batch)
    assert batch.names == ["a", "b"]
    assert batch.images.shape == (2, 3, 64, 64)
    assert batch.masks.shape == (3, 64, 64)
    assert batch.instance_image.tolist() == [0, 0, 1]
    assert batch.instance_image.dtype == torch.long
    assert [tuple(m.shape) for m in batch.gt_masks] == [(30, 40), (30, 40), (50, 20)]
    assert batch.original_sizes == [(30, 40), (50, 20)]
    assert batch.input_sizes == [(48, 64), (64, 26)]


def test_batch_to_moves_model_tensors_and_leaves_gt_masks_alone() -> None:
    batch = collate([_sample("a", (30, 40), k=1)])
    moved = batch.to("meta")
    assert moved.images.device.type == "meta" and moved.masks.device.type == "meta"
    assert moved.instance_image.device.type == "meta"
    assert moved.gt_masks[0].device.type == "cpu"
    assert batch.images.device.type == "cpu"  # the original batch is not modified
