"""Specifications for the folder format on masks as annotation tools export them (issues 15, 23):
suffixed mask names, images and masks in one folder, GIF/TIFF/JPEG masks, grey levels the
threshold splits, masks that hold class ids, split folders anywhere (`{split}` templates, `.`),
and refusals that list what exists and name the key that fixes them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samexp.config.errors import DatasetError
from samexp.data.folder import FolderDataset, folder_splits
from samexp.data.frame import Pipeline
from samexp.data.labelmap import LabelMapDataset

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
        str(tmp_path), "train", Pipeline(64), images_dir=".", masks_dir=".", mask_suffix="_mask"
    )
    assert dataset.names == ["a_jpg.rf.123", "b_jpg.rf.456"]
    assert dataset[0].image_path.endswith("a_jpg.rf.123.jpg")
    assert dataset[0].gt_masks[0].sum() == 15 * 20


def test_one_folder_without_a_mask_suffix_is_an_error_naming_the_override(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "a.jpg")
    _mask(tmp_path / "train" / "a_mask.png")
    with pytest.raises(DatasetError, match="set dataset.mask_suffix"):
        FolderDataset(str(tmp_path), "train", Pipeline(64), images_dir=".", masks_dir=".")


def test_isic_masks_in_their_own_folder_pair_by_mask_suffix(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "images" / "ISIC_0000000.jpg")
    _mask(tmp_path / "train" / "masks" / "ISIC_0000000_segmentation.png")
    dataset = FolderDataset(str(tmp_path), "train", Pipeline(64), mask_suffix="_segmentation")
    assert dataset.names == ["ISIC_0000000"]


def test_image_without_its_suffixed_mask_names_the_image_and_the_suffix_tried(
    tmp_path: Path,
) -> None:
    _image(tmp_path / "train" / "x.jpg")
    _mask(tmp_path / "train" / "x_mask.png")
    _image(tmp_path / "train" / "lonely.jpg")
    with pytest.raises(DatasetError, match="lonely.jpg") as err:
        FolderDataset(
            str(tmp_path), "train", Pipeline(64), images_dir=".", masks_dir=".", mask_suffix="_mask"
        )
    assert "dataset.mask_suffix='_mask'" in str(err.value)


def test_mask_without_the_suffix_in_a_masks_folder_is_an_error_not_ignored(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "images" / "x.jpg")
    _mask(tmp_path / "train" / "masks" / "x_segmentation.png")
    _mask(tmp_path / "train" / "masks" / "stray.png")
    with pytest.raises(DatasetError, match="stray.png") as err:
        FolderDataset(str(tmp_path), "train", Pipeline(64), mask_suffix="_segmentation")
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
    dataset = FolderDataset(str(tmp_path), "train", Pipeline(64), mask_suffix="_L")
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
        str(_drive(tmp_path)), "training", Pipeline(64), masks_dir="1st_manual",
        mask_suffix="_manual1", image_suffix="_training",
    )  # fmt: skip
    assert dataset.names == ["21", "22"]
    assert dataset[0].gt_masks[0].sum() == 15 * 20
    assert dataset[0].image_path.endswith("21_training.tif")


def test_image_without_the_image_suffix_is_an_error_naming_it(tmp_path: Path) -> None:
    _image(_drive(tmp_path) / "training" / "images" / "23_test.tif")
    with pytest.raises(DatasetError, match="23_test.tif") as err:
        FolderDataset(
            str(tmp_path), "training", Pipeline(64), masks_dir="1st_manual",
            mask_suffix="_manual1", image_suffix="_training",
        )  # fmt: skip
    assert "dataset.image_suffix='_training'" in str(err.value)


def test_truncated_gif_mask_is_an_error_naming_it(tmp_path: Path) -> None:
    gif = _drive(tmp_path) / "training" / "1st_manual" / "22_manual1.gif"
    gif.write_bytes(gif.read_bytes()[:40])
    with pytest.raises(DatasetError, match="22_manual1.gif"):
        FolderDataset(
            str(tmp_path), "training", Pipeline(64), masks_dir="1st_manual",
            mask_suffix="_manual1", image_suffix="_training",
        )  # fmt: skip


def test_split_placeholder_in_the_image_suffix_pairs_drive_training_and_test(
    tmp_path: Path,
) -> None:
    splits = folder_splits(
        "drive", str(_drive(tmp_path)), Pipeline(64), train_split="training", masks_dir="1st_manual",
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
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64))
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
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64), mask_threshold=63)
    assert not [r for r in caplog.records if "mask_threshold" in r.getMessage()]
    assert dataset[0].gt_masks[0].sum() == pytest.approx(10 * 10 + 13 * 18, abs=10)


def test_binary_jpeg_mask_noise_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    mask = _mask(tmp_path / "train" / "masks" / "a.jpg")
    assert len(np.unique(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))) > 2  # really noisy
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        FolderDataset(str(tmp_path), "train", Pipeline(64))
    assert not caplog.records


def test_zero_one_mask_is_skipped_with_a_hint_naming_the_threshold_that_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    _mask(tmp_path / "train" / "masks" / "a.png")
    _image(tmp_path / "train" / "images" / "ones.png")
    _mask(tmp_path / "train" / "masks" / "ones.png", value=1)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64))
    assert dataset.summary()["skipped_empty_mask"] == 1
    assert any(
        "ones.png" in r.getMessage() and "dataset.mask_threshold=0" in r.getMessage()
        for r in caplog.records
    )


def test_empty_mask_of_scattered_faint_noise_is_skipped_without_a_threshold_hint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    _mask(tmp_path / "train" / "masks" / "a.png")
    _image(tmp_path / "train" / "images" / "noise.png")
    noise = np.random.default_rng(1).integers(0, 4, SHAPE, dtype=np.uint8)
    path = tmp_path / "train" / "masks" / "noise.png"
    assert cv2.imwrite(str(path), noise)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64))
    assert dataset.summary()["skipped_empty_mask"] == 1
    messages = [r.getMessage() for r in caplog.records if "noise.png" in r.getMessage()]
    assert messages and "mask_threshold=" not in messages[0]
    assert "class ids" not in messages[0]  # noise, not regions of ids


# --- masks that are not 0/255: other foreground values, class ids --------------------------------


@pytest.mark.parametrize(
    ("ext", "value", "dtype"),
    [
        (".gif", 255, np.uint8),  # DRIVE's manual masks
        (".tif", 255, np.uint8),
        (".tiff", 65535, np.uint16),  # 16-bit TIFF: scaled to 255
        (".jpg", 255, np.uint8),  # JPEG noise at the border, thresholded away
        (".png", 200, np.uint8),  # any level above the threshold is foreground
        (".bmp", 255, np.uint8),
    ],
)
def test_masks_of_every_file_type_and_bright_value_load_as_one_object(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str, value: int, dtype: type
) -> None:
    _image(tmp_path / "train" / "images" / "a.png")
    path = tmp_path / "train" / "masks" / f"a{ext}"
    if dtype is np.uint16:
        path.parent.mkdir(parents=True)
        m = np.zeros(SHAPE, dtype=np.uint16)
        m[5:20, 10:30] = value
        assert cv2.imwrite(str(path), m)
    else:
        _mask(path, value)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64))
    assert int(dataset[0].gt_masks[0].sum()) == pytest.approx(15 * 20, abs=6)
    assert not caplog.records


def _small_values(path: Path, values: tuple[int, ...], dtype: type = np.uint8) -> Path:
    """A mask holding each of `values` in a block of its own, on 0 (a label map's shape)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros(SHAPE, dtype=dtype)
    for k, v in enumerate(values):
        m[2 + 9 * k : 10 + 9 * k, 4:30] = v
    if path.suffix == ".gif":
        Image.fromarray(m.astype(np.uint8)).convert("P").save(path)
    else:
        assert cv2.imwrite(str(path), m)
    return path


@pytest.mark.parametrize(
    ("ext", "dtype"), [(".png", np.uint8), (".tif", np.uint16), (".gif", np.uint8)]
)
def test_zero_one_masks_say_once_which_threshold_keeps_them_and_it_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ext: str, dtype: type
) -> None:
    for name in ("a", "b", "c"):
        _image(tmp_path / "train" / "images" / f"{name}.png")
        _small_values(tmp_path / "train" / "masks" / f"{name}{ext}", (1,), dtype)
    with pytest.raises(DatasetError, match="every mask is empty") as err:
        FolderDataset(str(tmp_path), "train", Pipeline(64))
    message = str(err.value)
    assert "3 hold only 0 and 1" in message and "set dataset.mask_threshold=0" in message
    assert "class ids" not in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # said once, above
    dataset = FolderDataset(str(tmp_path), "train", Pipeline(64), mask_threshold=0)
    assert dataset.names == ["a", "b", "c"] and int(dataset[0].gt_masks[0].sum()) == 8 * 26


def test_masks_holding_class_ids_say_once_that_they_look_like_ids_and_name_labelmap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's bug: one "no pixel above 127" line per image, then "every mask is empty"."""
    for name, ids in (("a", (1, 2)), ("b", (3,)), ("c", (1, 3)), ("d", (2,))):
        _image(tmp_path / "train" / "images" / f"{name}.png")
        _small_values(tmp_path / "train" / "masks" / f"{name}.png", ids)
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        with pytest.raises(DatasetError) as err:
            FolderDataset(str(tmp_path), "train", Pipeline(64))
    message = str(err.value)
    assert "4 hold only small values 0..3" in message and "a.png holds 0, 1, 2" in message
    assert "look like class ids" in message and "dataset=labelmap" in message
    assert "dataset.mask_threshold=0" in message
    assert not caplog.records  # no line per image


def test_a_few_empty_masks_among_good_ones_are_one_warning_per_split_grouped_by_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("good1", "good2", "black1", "black2", "ones"):
        _image(tmp_path / "train" / "images" / f"{name}.png")
    _mask(tmp_path / "train" / "masks" / "good1.png")
    _mask(tmp_path / "train" / "masks" / "good2.png")
    _mask(tmp_path / "train" / "masks" / "black1.png", value=0)
    _mask(tmp_path / "train" / "masks" / "black2.png", value=0)
    _small_values(tmp_path / "train" / "masks" / "ones.png", (1,))
    with caplog.at_level(logging.WARNING, logger="samexp.data.folder"):
        dataset = FolderDataset(str(tmp_path), "train", Pipeline(64))
    assert dataset.names == ["good1", "good2"]
    assert dataset.summary()["skipped_empty_mask"] == 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert "3 mask(s) with no pixel above the threshold 127" in messages[0]
    assert "1 hold only 0 and 1 (ones.png)" in messages[0]
    assert "2 are all black (black1.png, black2.png)" in messages[0]


# --- split folders anywhere: `{split}` templates and `.` -----------------------------------------


def _pairs(images: Path, masks: Path, names: tuple[str, ...], mask_suffix: str = "") -> None:
    for name in names:
        _image(images / f"{name}.jpg")
        _mask(masks / f"{name}{mask_suffix}.png")


@pytest.mark.parametrize(
    ("layout", "overrides"),
    [
        ("{root}/{split}/images", {}),  # the old rule, kept
        ("{root}/images/{split}", {"images_dir": "images/{split}", "masks_dir": "masks/{split}"}),
        ("{root}/{split}", {"images_dir": "{split}", "masks_dir": "{split}annot"}),  # CamVid
        ("{root}/{split}/img", {"images_dir": "{split}/img", "masks_dir": "{split}/gt"}),
    ],
)
def test_split_folders_anywhere_are_written_with_a_split_placeholder(
    tmp_path: Path, layout: str, overrides: dict[str, str]
) -> None:
    masks = {
        "{root}/{split}/images": "{root}/{split}/masks",
        "{root}/images/{split}": "{root}/masks/{split}",
        "{root}/{split}": "{root}/{split}annot",
        "{root}/{split}/img": "{root}/{split}/gt",
    }[layout]
    for split, names in (("train", ("a", "b")), ("test", ("c",))):
        where = {"root": tmp_path, "split": split}
        _pairs(Path(layout.format(**where)), Path(masks.format(**where)), names)
    splits = folder_splits(None, str(tmp_path), Pipeline(64), **overrides)
    assert splits.train.names == ["a", "b"] and splits.test.names == ["c"]
    assert splits.name == tmp_path.name


def test_split_dot_is_the_root_itself_and_the_test_split_is_held_out(tmp_path: Path) -> None:
    _pairs(tmp_path / "images", tmp_path / "masks", tuple("abcdefghij"))
    splits = folder_splits("flat", str(tmp_path), Pipeline(64), train_split=".", test_split=None,
                           test_fraction=0.3)  # fmt: skip
    assert len(splits.train) + len(splits.test) == 10 and len(splits.test) >= 1
    assert not set(splits.train.names) & set(splits.test.names)


def test_flat_roboflow_masks_beside_images_with_split_dot(tmp_path: Path) -> None:
    _pairs(tmp_path, tmp_path, ("a", "b", "c"), mask_suffix="_mask")
    splits = folder_splits("flat", str(tmp_path), Pipeline(64), train_split=".", test_split=None,
                           images_dir=".", masks_dir=".", mask_suffix="_mask")  # fmt: skip
    assert sorted(splits.train.names + splits.test.names) == ["a", "b", "c"]


# --- refusals list what exists and name the key that fixes them ----------------------------------


def test_missing_split_lists_the_root_folders_without_calling_them_splits(tmp_path: Path) -> None:
    """A VOC-shaped root: no split folders at all."""
    _pairs(tmp_path / "JPEGImages", tmp_path / "SegmentationClass", ("a",))
    with pytest.raises(DatasetError) as err:
        folder_splits(None, str(tmp_path), Pipeline(64))
    message = str(err.value)
    assert "split 'train' not found" in message
    assert f"folders in {tmp_path}: JPEGImages, SegmentationClass" in message
    assert "splits in" not in message
    assert "dataset.train_split=. " in message
    assert "dataset.images_dir=JPEGImages dataset.masks_dir=SegmentationClass" in message
    assert "{split}" in message  # the other way to write it


def test_missing_test_split_names_its_key_and_holding_one_out(tmp_path: Path) -> None:
    _pairs(tmp_path / "train" / "images", tmp_path / "train" / "masks", ("a", "b"))
    with pytest.raises(DatasetError, match="set dataset.test_split=<its name> .or "
                                           "dataset.test_split=null"):  # fmt: skip
        folder_splits(None, str(tmp_path), Pipeline(64))


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (FolderDataset, {}, "dataset.images_dir"),
        (FolderDataset, {"images_dir": "img"}, "dataset.masks_dir"),
    ],
)
def test_missing_folder_lists_the_folders_that_exist_and_names_its_key(
    tmp_path: Path, cls: type, kwargs: dict[str, str], key: str
) -> None:
    _pairs(tmp_path / "train" / "img", tmp_path / "train" / "gt", ("a",))
    with pytest.raises(DatasetError) as err:
        cls(str(tmp_path), "train", Pipeline(64), **kwargs)
    message = str(err.value)
    assert "does not exist" in message and f"folders in {tmp_path / 'train'}: gt, img" in message
    assert f"set {key} to the folder" in message


def test_missing_templated_folder_lists_its_nearest_existing_parent(tmp_path: Path) -> None:
    _pairs(tmp_path / "images" / "training", tmp_path / "masks" / "training", ("a",))
    with pytest.raises(DatasetError) as err:
        FolderDataset(str(tmp_path), "train", Pipeline(64), images_dir="images/{split}",
                      masks_dir="masks/{split}")  # fmt: skip
    assert f"image folder {tmp_path / 'images' / 'train'} does not exist" in str(err.value)
    assert f"folders in {tmp_path / 'images'}: training" in str(err.value)


def test_masks_named_with_a_suffix_the_config_lacks_suggest_the_suffix(tmp_path: Path) -> None:
    _pairs(tmp_path / "train" / "images", tmp_path / "train" / "masks", ("a", "b"), "_mask")
    with pytest.raises(DatasetError, match="2 of them have a mask named <name>_mask: set "
                                           "dataset.mask_suffix=_mask"):  # fmt: skip
        FolderDataset(str(tmp_path), "train", Pipeline(64))


@pytest.mark.parametrize(
    ("cls", "kwargs", "names", "not_names"),
    [
        (FolderDataset, {"masks_dir": "."}, ["dataset.mask_suffix", "dataset.masks_dir"],
         ["label"]),
        (LabelMapDataset, {"labels_dir": "."}, ["dataset.label_suffix", "dataset.labels_dir"],
         ["mask_suffix", "masks_dir"]),
    ],
)  # fmt: skip
def test_refusals_name_the_keys_of_their_own_format(
    tmp_path: Path, cls: type, kwargs: dict[str, str], names: list[str], not_names: list[str]
) -> None:
    _pairs(tmp_path / "train", tmp_path / "train", ("a",), mask_suffix="_mask")
    (tmp_path / "classes.txt").write_text("0 background\n1 thing\n")
    with pytest.raises(DatasetError) as err:
        cls(str(tmp_path), "train", Pipeline(64), images_dir=".", **kwargs)
    message = str(err.value)
    assert all(n in message for n in names), message
    assert not [n for n in not_names if n in message], message
