"""Specifications for the folder format on masks as annotation tools export them (issue 15):
suffixed mask names, images and masks in one folder, GIF masks, grey levels the threshold splits."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samexp.data.folder import FolderDataset, folder_splits
from samexp.errors import DatasetError

SHAPE = (30, 40)  # H×W of every synthetic image


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def _mask(path: Path, value: int = 255) -> Path:
    """A filled 15×20 rectangle of `value` on black."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[5:20, 10:30] = value
    if path.suffix == ".gif":  # OpenCV cannot write GIF; a palette image as DRIVE ships
        Image.fromarray(m).convert("P").save(path)
    else:
        assert cv2.imwrite(str(path), m)
    return path


# --- masks named with a suffix -------------------------------------------------------------------


def test_roboflow_masks_beside_their_images_pair_by_mask_suffix(tmp_path: Path) -> None:
    split = tmp_path / "train"
    for name in ("a_jpg.rf.123", "b_jpg.rf.456"):
        _image(split / f"{name}.jpg")
        _mask(split / f"{name}_mask.png")
    dataset = FolderDataset(
        str(tmp_path), "train", 64, images_dir=".", masks_dir=".", mask_suffix="_mask"
    )
    assert dataset.names == ["a_jpg.rf.123", "b_jpg.rf.456"]
    assert dataset[0].image_path.endswith("a_jpg.rf.123.jpg")
    assert dataset[0].gt_masks[0].sum() == 15 * 20


def test_one_folder_without_a_mask_suffix_is_an_error_naming_the_override(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "a.jpg")
    _mask(tmp_path / "train" / "a_mask.png")
    with pytest.raises(DatasetError, match="set dataset.mask_suffix"):
        FolderDataset(str(tmp_path), "train", 64, images_dir=".", masks_dir=".")


def test_isic_masks_in_their_own_folder_pair_by_mask_suffix(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "images" / "ISIC_0000000.jpg")
    _mask(tmp_path / "train" / "masks" / "ISIC_0000000_segmentation.png")
    dataset = FolderDataset(str(tmp_path), "train", 64, mask_suffix="_segmentation")
    assert dataset.names == ["ISIC_0000000"]


def test_image_without_its_suffixed_mask_names_the_image_and_the_suffix_tried(
    tmp_path: Path,
) -> None:
    _image(tmp_path / "train" / "x.jpg")
    _mask(tmp_path / "train" / "x_mask.png")
    _image(tmp_path / "train" / "lonely.jpg")
    with pytest.raises(DatasetError, match="lonely.jpg") as err:
        FolderDataset(
            str(tmp_path), "train", 64, images_dir=".", masks_dir=".", mask_suffix="_mask"
        )
    assert "dataset.mask_suffix='_mask'" in str(err.value)


def test_mask_without_the_suffix_in_a_masks_folder_is_an_error_not_ignored(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "images" / "x.jpg")
    _mask(tmp_path / "train" / "masks" / "x_segmentation.png")
    _mask(tmp_path / "train" / "masks" / "stray.png")
    with pytest.raises(DatasetError, match="stray.png") as err:
        FolderDataset(str(tmp_path), "train", 64, mask_suffix="_segmentation")
    assert "dataset.mask_suffix='_segmentation'" in str(err.value)


def test_camvid_colour_labels_pair_and_every_non_void_colour_is_foreground(
    tmp_path: Path,
) -> None:
    _image(tmp_path / "train" / "images" / "0001TP_006690.png")
    colour = np.zeros((*SHAPE, 3), dtype=np.uint8)
    colour[0:10, 0:10] = (128, 0, 64)  # BGR of CamVid's "Car" (64, 0, 128)
    colour[20:30, 0:10] = (0, 128, 128)  # "Building"; black (0, 0, 0) is "Void"
    path = tmp_path / "train" / "masks" / "0001TP_006690_L.png"
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), colour)
    dataset = FolderDataset(str(tmp_path), "train", 64, mask_suffix="_L")
    assert dataset[0].gt_masks[0].sum() == 200


# --- DRIVE: `21_training.tif` + `21_manual1.gif` -------------------------------------------------


def _drive(tmp_path: Path) -> Path:
    for split, numbers in (("training", (21, 22)), ("test", (1,))):
        for n in numbers:
            _image(tmp_path / split / "images" / f"{n:02d}_{split}.tif")
            _mask(tmp_path / split / "1st_manual" / f"{n:02d}_manual1.gif")
    return tmp_path


def test_drive_pairs_by_image_and_mask_suffix_and_reads_gif_masks(tmp_path: Path) -> None:
    dataset = FolderDataset(
        str(_drive(tmp_path)), "training", 64, masks_dir="1st_manual",
        mask_suffix="_manual1", image_suffix="_training",
    )  # fmt: skip
    assert dataset.names == ["21", "22"]
    assert dataset[0].gt_masks[0].sum() == 15 * 20
    assert dataset[0].image_path.endswith("21_training.tif")


def test_image_without_the_image_suffix_is_an_error_naming_it(tmp_path: Path) -> None:
    _image(_drive(tmp_path) / "training" / "images" / "23_test.tif")
    with pytest.raises(DatasetError, match="23_test.tif") as err:
        FolderDataset(
            str(tmp_path), "training", 64, masks_dir="1st_manual",
            mask_suffix="_manual1", image_suffix="_training",
        )  # fmt: skip
    assert "dataset.image_suffix='_training'" in str(err.value)


def test_truncated_gif_mask_is_an_error_naming_it(tmp_path: Path) -> None:
    gif = _drive(tmp_path) / "training" / "1st_manual" / "22_manual1.gif"
    gif.write_bytes(gif.read_bytes()[:40])
    with pytest.raises(DatasetError, match="22_manual1.gif"):
        FolderDataset(
            str(tmp_path), "training", 64, masks_dir="1st_manual",
            mask_suffix="_manual1", image_suffix="_training",
        )  # fmt: skip


def test_split_placeholder_in_the_image_suffix_pairs_drive_training_and_test(
    tmp_path: Path,
) -> None:
    splits = folder_splits(
        "drive", str(_drive(tmp_path)), 64, train_split="training", masks_dir="1st_manual",
        mask_suffix="_manual1", image_suffix="_{split}",
    )  # fmt: skip
    assert splits.train.names == ["21", "22"]
    assert splits.test.names == ["01"]
    assert splits.test[0].image_path.endswith("01_test.tif")


# --- grey levels the threshold splits ------------------------------------------------------------


def _levels_mask(path: Path, ext: str = ".png") -> Path:
    """A {0, 127, 254} mask: two regions, one at each grey level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[2:12, 2:12] = 127
    m[15:28, 20:38] = 254
    assert cv2.imwrite(str(path.with_suffix(ext)), m)
    return path.with_suffix(ext)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_mask_levels_split_by_the_threshold_warn_once_naming_file_values_and_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str
) -> None:
    for name in ("a", "b"):
        _image(tmp_path / "train" / "images" / f"{name}.png")
        _levels_mask(tmp_path / "train" / "masks" / name, ext)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", 64)
    warnings = [r.getMessage() for r in caplog.records if "mask_threshold" in r.getMessage()]
    assert len(warnings) == 1, warnings
    # a JPEG shifts a level by a value or two: 127 may come back as 126
    assert re.search(rf"a\{ext} holds 12[5-9], 25[2-5]: ", warnings[0]), warnings[0]
    assert "2 mask(s)" in warnings[0]
    assert "dataset.mask_threshold=63" in warnings[0]
    kept = int(dataset[0].gt_masks[0].sum())
    # today's meaning, kept: the 127 region is background (a JPEG frays its border a little)
    assert kept == 13 * 18 if ext == ".png" else 13 * 18 <= kept < 13 * 18 + 10 * 10 // 2


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_lowered_threshold_keeps_both_levels_and_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    _levels_mask(tmp_path / "train" / "masks" / "a", ext)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", 64, mask_threshold=63)
    assert not [r for r in caplog.records if "mask_threshold" in r.getMessage()]
    assert dataset[0].gt_masks[0].sum() == pytest.approx(10 * 10 + 13 * 18, abs=10)


def test_binary_jpeg_mask_noise_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    mask = _mask(tmp_path / "train" / "masks" / "a.jpg")
    assert len(np.unique(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))) > 2  # really noisy
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        FolderDataset(str(tmp_path), "train", 64)
    assert not caplog.records


def test_zero_one_mask_is_skipped_with_a_hint_naming_the_threshold_that_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    _mask(tmp_path / "train" / "masks" / "a.png")
    _image(tmp_path / "train" / "images" / "ones.png")
    _mask(tmp_path / "train" / "masks" / "ones.png", value=1)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", 64)
    assert dataset.summary()["skipped_empty_mask"] == 1
    assert any(
        "ones.png" in r.getMessage() and "dataset.mask_threshold=0" in r.getMessage()
        for r in caplog.records
    )


def test_empty_jpeg_mask_with_faint_noise_is_skipped_without_a_threshold_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    _mask(tmp_path / "train" / "masks" / "a.png")
    _image(tmp_path / "train" / "images" / "noise.png")
    noise = np.random.default_rng(1).integers(0, 4, SHAPE, dtype=np.uint8)
    path = tmp_path / "train" / "masks" / "noise.png"
    assert cv2.imwrite(str(path), noise)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", 64)
    assert dataset.summary()["skipped_empty_mask"] == 1
    messages = [r.getMessage() for r in caplog.records if "noise.png" in r.getMessage()]
    assert messages and "mask_threshold=" not in messages[0]
