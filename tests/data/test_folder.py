"""Specifications for the folder format, on the real rings data and on tiny synthetic folders."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader

from samexp.config.errors import ConfigValueError, DatasetError
from samexp.data import base
from samexp.data.base import collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.data.views import SampleDataset, Subset

WritePair = Callable[..., tuple[Path, Path]]  # the `write_pair` fixture from conftest.py


def _raw_mask(path: Path) -> np.ndarray:
    """The mask file as stored, without going through the loader under test."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# --- the real rings dataset ------------------------------------------------------------------


def test_rings_splits_have_8_train_and_2_test_samples(rings_train, rings_test) -> None:
    assert len(rings_train) == 8 and len(rings_test) == 2
    assert rings_train.names == [f"ring{i}" for i in range(1, 9)]
    assert rings_test.names == ["ring_test_1", "ring_test_2"]
    assert rings_train.summary() == {"loaded": 8, "skipped_empty_mask": 0, "skipped_unreadable": 0}
    assert rings_train.skipped == []


def test_rings_masks_are_binary_and_non_empty(rings_train, rings_test) -> None:
    for dataset in (rings_train, rings_test):
        for sample in dataset:
            assert sample.masks.shape[0] == 1 and sample.masks.dtype == torch.bool
            assert sample.gt_masks.dtype == torch.bool
            assert sample.masks.any() and sample.gt_masks.any()


def test_rings_loads_both_three_channel_and_one_channel_masks(rings_root, rings_train) -> None:
    masks_dir = rings_root / "train" / "masks"
    channels = {name: _raw_mask(masks_dir / f"{name}.jpg").ndim for name in rings_train.names}
    # The claim is only proven if the raw files really contain both kinds.
    assert set(channels.values()) == {2, 3}, channels
    for i, name in enumerate(rings_train.names):
        assert rings_train[i].gt_masks.any(), (
            f"{name} ({channels[name]}-dim raw mask) lost its mask"
        )


def test_rings_sample_image_is_sam_framed_uint8_with_zero_padding(rings_train) -> None:
    size = rings_train.pipeline.size
    for sample in rings_train:
        assert sample.image.shape == (3, size, size) and sample.image.dtype == torch.uint8
        h, w = sample.input_size
        assert max(h, w) == size
        assert (sample.image[:, h:, :] == 0).all() and (sample.image[:, :, w:] == 0).all()
        assert not sample.masks[:, h:, :].any() and not sample.masks[:, :, w:].any()
        assert sample.image[:, :h, :w].float().mean() > 50  # white-background packshots


def test_rings_input_size_preserves_aspect_ratio_and_gt_masks_keep_original_size(
    rings_train,
) -> None:
    for sample in rings_train:
        with Image.open(sample.image_path) as image:
            width, height = image.size
        assert sample.original_size == (height, width)
        assert tuple(sample.gt_masks.shape) == (1, height, width)
        h, w = sample.input_size
        scale = rings_train.pipeline.size / max(height, width)
        assert abs(h - height * scale) <= 1 and abs(w - width * scale) <= 1


def test_jpeg_mask_noise_is_thresholded_at_127_never_compared_to_255(
    rings_root, rings_train
) -> None:
    masks_dir = rings_root / "train" / "masks"
    for i, name in enumerate(rings_train.names):
        raw = _raw_mask(masks_dir / f"{name}.jpg")
        gray = raw.max(axis=2) if raw.ndim == 3 else raw
        assert ((gray > 0) & (gray < 255)).any(), f"{name}: expected JPEG noise in the raw mask"
        loaded = rings_train[i].gt_masks[0].numpy()
        assert set(np.unique(loaded.astype(np.uint8))) == {0, 1}
        assert loaded.mean() == pytest.approx((gray > 127).mean(), abs=1e-9)
        # Comparing to 255 would lose real foreground: the noise is not only at the border.
        assert (gray == 255).mean() < (gray > 127).mean()


def test_rings_collate_batches_images_of_different_original_sizes(rings_train) -> None:
    loader = DataLoader(rings_train, batch_size=2, collate_fn=collate, shuffle=False)
    batch = next(iter(loader))
    size = rings_train.pipeline.size
    assert batch.names == ["ring1", "ring2"]
    assert batch.original_sizes == [(243, 208), (1080, 1920)]
    assert batch.images.shape == (2, 3, size, size)
    assert batch.masks.shape == (2, size, size)
    assert batch.instance_image.tolist() == [0, 1]
    assert [tuple(m.shape) for m in batch.gt_masks] == [(243, 208), (1080, 1920)]


# --- synthetic folders: what users get wrong ---------------------------------------------------


def test_mixed_extensions_pair_by_stem(tmp_path: Path, write_pair: WritePair) -> None:
    write_pair("a", image_ext=".jpg", mask_ext=".png")
    write_pair("b", image_ext=".PNG", mask_ext=".bmp")
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert dataset.names == ["a", "b"]
    sample = dataset[0]
    assert sample.gt_masks[0].sum() == 15 * 20  # the rectangle survives, JPEG image or not
    assert sample.image_path.endswith("a.jpg")


def test_image_without_mask_names_the_image_and_the_mask_folder(
    tmp_path: Path, write_pair: WritePair
) -> None:
    write_pair("a")
    write_pair("lonely", mask=False)
    with pytest.raises(DatasetError, match="lonely.png") as err:
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert str(tmp_path / "train" / "masks") in str(err.value)


def test_mask_without_image_is_an_error_not_silently_dropped(
    tmp_path: Path, write_pair: WritePair
) -> None:
    write_pair("a")
    write_pair("orphan", image=False)
    with pytest.raises(DatasetError, match="orphan.png") as err:
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert "no image" in str(err.value)


def test_unreadable_image_is_reported_by_name(tmp_path: Path, write_pair: WritePair) -> None:
    _, _ = write_pair("broken")
    (tmp_path / "train" / "images" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match="broken.png"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))


def test_unreadable_mask_is_reported_by_name(tmp_path: Path, write_pair: WritePair) -> None:
    _, mask_path = write_pair("broken")
    mask_path.write_bytes(b"\x00garbage")
    with pytest.raises(DatasetError, match="masks/broken.png"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))


def test_size_mismatch_names_both_files_and_both_sizes(
    tmp_path: Path, write_pair: WritePair
) -> None:
    write_pair("a", shape=(30, 40), mask_shape=(30, 41))
    with pytest.raises(DatasetError) as err:
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    message = str(err.value)
    assert "images/a.png" in message and "masks/a.png" in message
    assert "40×30" in message and "41×30" in message


def test_empty_images_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    (tmp_path / "train" / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="no image files"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))


def test_missing_split_lists_the_splits_that_exist(tmp_path: Path, write_pair: WritePair) -> None:
    write_pair("a")
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetError, match="'val' not found") as err:
        FolderDataset(str(tmp_path), "val", pipeline=Pipeline(64))
    assert "test, train" in str(err.value)


def test_missing_root_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere"):
        FolderDataset(str(tmp_path / "nowhere"), "train", pipeline=Pipeline(64))


def test_missing_masks_folder_is_an_error_naming_it(tmp_path: Path, write_pair: WritePair) -> None:
    write_pair("a")
    with pytest.raises(DatasetError, match="labels"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64), masks_dir="labels")


@pytest.mark.parametrize("side", ["images", "masks"])
def test_duplicate_stems_on_one_side_are_an_error(
    tmp_path: Path, write_pair: WritePair, side: str
) -> None:
    write_pair("a", image_ext=".png", mask_ext=".png")
    folder = tmp_path / "train" / side
    cv2.imwrite(str(folder / "a.jpg"), cv2.imread(str(folder / "a.png")))
    with pytest.raises(DatasetError, match="a.jpg, a.png"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))


def test_empty_mask_is_skipped_with_a_warning_and_counted(
    tmp_path: Path, write_pair: WritePair, caplog: pytest.LogCaptureFixture
) -> None:
    write_pair("a")
    write_pair("blank", empty_mask=True)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert dataset.names == ["a"]
    assert dataset.summary() == {"loaded": 1, "skipped_empty_mask": 1, "skipped_unreadable": 0}
    assert [name for name, _ in dataset.skipped] == ["blank"]
    assert any("blank.png" in r.getMessage() for r in caplog.records)


def test_mask_below_threshold_counts_as_empty(tmp_path: Path, write_pair: WritePair) -> None:
    write_pair("a")
    _, mask_path = write_pair("faint")
    cv2.imwrite(str(mask_path), np.full((30, 40), 127, dtype=np.uint8))
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert dataset.summary() == {"loaded": 1, "skipped_empty_mask": 1, "skipped_unreadable": 0}


@pytest.mark.parametrize("threshold", [-1, 255, 300])
def test_a_direct_call_refuses_a_mask_threshold_out_of_range_in_the_configs_words(
    tmp_path: Path, write_pair: WritePair, threshold: int
) -> None:
    # the range is declared once, in the signature: `dataset.mask_threshold=300` on the command
    # line and FolderDataset(..., mask_threshold=300) in Python stop with the same words
    write_pair("a")
    with pytest.raises(ConfigValueError) as err:
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64), mask_threshold=threshold)
    assert str(err.value).startswith(f"dataset.mask_threshold={threshold}: must be in [0, 254]")


def test_all_masks_empty_is_an_error(tmp_path: Path, write_pair: WritePair) -> None:
    write_pair("blank", empty_mask=True)
    with pytest.raises(DatasetError, match="every mask is empty"):
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))


def test_colour_mask_counts_any_bright_channel_as_foreground(
    tmp_path: Path, write_pair: WritePair
) -> None:
    _, mask_path = write_pair("red")
    colour = np.zeros((30, 40, 3), dtype=np.uint8)
    colour[0:10, 0:10, 2] = 255  # pure red (BGR): luminance ~76 would fall under 127
    cv2.imwrite(str(mask_path), colour)
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert dataset[0].gt_masks.sum() == 100


def test_images_and_masks_folder_names_are_configurable(tmp_path: Path) -> None:
    for folder in ("img", "gt"):
        (tmp_path / "val" / folder).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "val" / "img" / "x.png"), np.zeros((30, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "val" / "gt" / "x.png"), np.full((30, 40), 255, np.uint8))
    dataset = FolderDataset(
        str(tmp_path), "val", pipeline=Pipeline(64), images_dir="img", masks_dir="gt"
    )
    assert dataset.names == ["x"]


# --- EXIF orientation: photos stored sideways ----------------------------------------------------

STORED = (40, 64)  # H×W of the pixels as stored in the file
BLOCK = (slice(5, 15), slice(40, 60))  # a bright block off-centre, so any turn would move it


def _write_turned_jpeg(tmp_path: Path, orientation: int) -> Path:
    """A JPEG whose stored pixels have a bright block, tagged with an EXIF orientation."""
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    pixels = np.full((*STORED, 3), 20, dtype=np.uint8)
    pixels[BLOCK] = 240
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "train" / "images" / "photo.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def _displayed(path: Path) -> np.ndarray:
    """The image as viewers show it, by PIL (not the loader under test)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _check_mask_lines_up(dataset: FolderDataset, image_path: Path) -> None:
    sample = dataset[0]
    shown = _displayed(image_path)
    assert sample.original_size == shown.shape[:2]
    mask = sample.gt_masks[0].numpy()
    h, w = sample.input_size  # the side is the displayed longest side: the frame is not resized
    loaded = sample.image[:, :h, :w].permute(1, 2, 0).numpy()
    assert (h, w) == shown.shape[:2]
    assert _iou(mask, loaded.mean(2) > 128) > 0.95  # the mask sits on the bright block
    assert _iou(mask, shown.mean(2) > 128) > 0.95  # ... where viewers see it


@pytest.mark.parametrize("orientation", [3, 6])
def test_mask_drawn_on_stored_pixels_turns_with_an_exif_oriented_image(
    tmp_path: Path, orientation: int
) -> None:
    image_path = _write_turned_jpeg(tmp_path, orientation)
    mask = np.zeros(STORED, dtype=np.uint8)
    mask[BLOCK] = 255
    cv2.imwrite(str(tmp_path / "train" / "masks" / "photo.png"), mask)
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(max(STORED)))
    if orientation == 6:
        assert dataset[0].original_size == (STORED[1], STORED[0])  # displayed upright
    _check_mask_lines_up(dataset, image_path)


def test_mask_drawn_on_the_displayed_image_is_used_as_is(tmp_path: Path) -> None:
    image_path = _write_turned_jpeg(tmp_path, 6)
    mask = (_displayed(image_path).mean(2) > 128).astype(np.uint8) * 255
    assert mask.shape == (STORED[1], STORED[0])
    cv2.imwrite(str(tmp_path / "train" / "masks" / "photo.png"), mask)
    _check_mask_lines_up(
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(max(STORED))), image_path
    )


def test_size_mismatch_with_exif_names_stored_and_displayed_sizes(tmp_path: Path) -> None:
    _write_turned_jpeg(tmp_path, 6)
    cv2.imwrite(str(tmp_path / "train" / "masks" / "photo.png"), np.zeros((41, 64), np.uint8))
    with pytest.raises(DatasetError) as err:
        FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    message = str(err.value)
    assert "64×40 (W×H) as stored" in message and "40×64 as displayed" in message
    assert "EXIF orientation 6" in message and "64×41" in message


def test_construction_reads_images_by_header_only(
    tmp_path: Path, write_pair: WritePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pair("a", image_ext=".jpg")
    decoded: list[str] = []
    real = base.decode_unchanged
    monkeypatch.setattr(
        base, "decode_unchanged", lambda data, p: decoded.append(str(p)) or real(data, p)
    )
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(64))
    assert decoded and not [p for p in decoded if "/images/" in p]  # masks only
    dataset[0]
    assert [p for p in decoded if "/images/" in p]  # the image is decoded when used


def test_a_folder_dataset_and_its_carved_part_follow_the_dataset_contract(rings_train) -> None:
    assert isinstance(rings_train, SampleDataset)
    assert isinstance(Subset(rings_train, [0, 1]), SampleDataset)
    assert not isinstance(object(), SampleDataset)


def test_a_bare_size_is_refused_saying_datasets_take_the_models_pipeline(rings_root) -> None:
    with pytest.raises(DatasetError, match=r"Pipeline\(size\).*got 64"):  # the old img_size=64
        FolderDataset(str(rings_root), "train", 64)
