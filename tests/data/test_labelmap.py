"""Specifications for the label-map (semantic) format, on a tiny generated 3-class dataset and on
label maps in the exact shape annotation tools export them (CVAT, labelme2voc, Roboflow, CamVid)."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import samexp.data.labelmap as labelmap
from samexp.config.errors import DatasetError
from samexp.data.classes import label_classes
from samexp.data.frame import Pipeline
from samexp.data.labelmap import LabelMapDataset, labelmap_splits
from samexp.data.views import SampleDataset

SHAPE = (40, 56)  # H×W
CLASSES = "# id name\n0 background\n1 cat\n2 dog\n\n3 bird  # birds of any kind\n"
NAMES = {1: "cat", 2: "dog", 3: "bird"}
IGNORE = 255
# image name -> classes drawn; "empty" holds background and ignore pixels only
LAYOUT = {"a": (1, 2, 3), "b": (1,), "c": (2, 3), "empty": ()}


def draw_label(classes: tuple[int, ...], shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Background 0, one block per class, and a VOC-style ignore band (255) at each block's edge."""
    label = np.zeros(shape, dtype=np.uint8)
    label[0:3, :] = IGNORE
    for k, class_id in enumerate(classes):
        top, left = 6 + 10 * k, 4 + 16 * k
        label[top - 1 : top + 11, left - 1 : left + 13] = IGNORE
        label[top : top + 10, left : left + 12] = class_id
    return label


def write_labelmap(root: Path, splits: dict[str, dict[str, tuple[int, ...]]]) -> Path:
    """Images whose class blocks are bright, distinct colours (learnable), labels as 8-bit PNGs."""
    (root / "classes.txt").write_text(CLASSES)
    colours = {
        0: (20, 20, 20),
        1: (250, 60, 60),
        2: (60, 250, 60),
        3: (60, 60, 250),
        255: (90,) * 3,
    }
    for split, layout in splits.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for name, classes in layout.items():
            label = draw_label(classes)
            image = np.zeros((*SHAPE, 3), dtype=np.uint8)
            for value, colour in colours.items():
                image[label == value] = colour
            Image.fromarray(image).save(root / split / "images" / f"{name}.jpg", quality=95)
            Image.fromarray(label).save(root / split / "labels" / f"{name}.png")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_labelmap(tmp_path, {"train": LAYOUT, "test": {"t1": (1, 2, 3), "t2": (2,)}})


def load(
    root: Path, split: str = "train", *, background_ids=None, ignore_index=255, **kwargs
) -> LabelMapDataset:
    classes = label_classes(root, background_ids=background_ids, ignore_index=ignore_index)
    return LabelMapDataset(str(root), split, pipeline=Pipeline(64), classes=classes, **kwargs)


def label_path(root: Path, name: str, split: str = "train") -> Path:
    return root / split / "labels" / f"{name}.png"


# --- what a label map becomes ------------------------------------------------------------------


def test_each_class_present_becomes_one_instance_named_by_its_class(root: Path) -> None:
    dataset = load(root)
    assert dataset.names == ["a", "b", "c"]
    for sample, name in zip(dataset, dataset.names, strict=True):
        assert sample.categories == [NAMES[i] for i in LAYOUT[name]]
        assert len(sample.gt_masks) == len(LAYOUT[name])


def test_masks_equal_label_equals_id_and_ignore_and_background_are_in_no_mask(root: Path) -> None:
    dataset = load(root)
    for sample, name in zip(dataset, dataset.names, strict=True):
        raw = np.asarray(Image.open(label_path(root, name)))  # not through the loader under test
        for mask, class_id in zip(sample.gt_masks.numpy(), LAYOUT[name], strict=True):
            np.testing.assert_array_equal(mask, raw == class_id)
        union = sample.gt_masks.any(0).numpy()
        assert not union[raw == IGNORE].any() and not union[raw == 0].any()
        assert sample.masks.shape == (len(LAYOUT[name]), 64, 64)


def test_summary_counts_loaded_skipped_and_instances_per_class(root: Path) -> None:
    assert load(root).summary() == {
        "loaded": 3,
        "skipped_no_targets": 1,
        "skipped_unreadable": 0,
        "skipped_small_region": 0,
        "instances": 6,
        "instances/cat": 2,
        "instances/dog": 2,
        "instances/bird": 2,
    }


def test_image_without_a_target_class_is_skipped_with_a_warning(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="samexp.data.labelmap"):
        dataset = load(root)
    assert "empty" not in dataset.names
    assert dataset.skipped == [("empty", "no target class")]
    assert any("empty.png" in r.getMessage() for r in caplog.records)


def test_instances_are_counted_per_class_in_class_id_order_as_the_samples_hold_them(
    root: Path,
) -> None:
    dataset = load(root)
    per_class = dataset.instances_per_class()
    assert list(per_class.items()) == [("cat", 2), ("dog", 2), ("bird", 2)]
    assert Counter(c for sample in dataset for c in sample.categories) == per_class


def test_regions_smaller_than_min_area_are_skipped_and_counted(root: Path) -> None:
    small = draw_label((1,))
    small[30:33, 50:53] = 2  # a 3×3 speck of dog beside a 10×12 cat
    Image.fromarray(small).save(label_path(root, "b"))
    dataset = load(root, min_area=10)
    assert dataset.summary()["skipped_small_region"] == 1
    assert dataset.skipped_regions == [("b", "dog", 9)]
    assert dataset[dataset.names.index("b")].categories == ["cat"]
    assert load(root).skipped_regions == []  # min_area=0 keeps every region


def test_only_background_ids_are_never_targets(root: Path) -> None:
    dataset = load(root, background_ids=(0, 1))  # cat declared background
    assert "cat" not in {c for sample in dataset for c in sample.categories}
    assert "b" not in dataset.names  # b held only cat


# --- label encodings ---------------------------------------------------------------------------


def test_palette_png_labels_are_read_as_indices_not_colours(root: Path) -> None:
    label = draw_label((1, 2, 3))
    palette = Image.fromarray(label)
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252)
    assert palette.mode == "P"
    palette.save(label_path(root, "a"))
    assert cv2.imread(str(label_path(root, "a")), cv2.IMREAD_UNCHANGED).ndim == 3  # the trap
    sample = load(root)[0]
    assert sample.categories == ["cat", "dog", "bird"]
    for mask, class_id in zip(sample.gt_masks.numpy(), (1, 2, 3), strict=True):
        np.testing.assert_array_equal(mask, label == class_id)


def test_16_bit_labels_keep_their_ids_unscaled(root: Path) -> None:
    label = draw_label((1, 2, 3)).astype(np.uint16)
    assert cv2.imwrite(str(label_path(root, "a")), label)
    assert cv2.imread(str(label_path(root, "a")), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    sample = load(root)[0]
    assert sample.categories == ["cat", "dog", "bird"]
    np.testing.assert_array_equal(sample.gt_masks[2].numpy(), label == 3)


def test_16_bit_ids_above_255_are_classes_when_listed(root: Path) -> None:
    (root / "classes.txt").write_text(CLASSES + "1000 building\n")
    label = draw_label((1,)).astype(np.uint16)
    label[30:, 40:] = 1000
    assert cv2.imwrite(str(label_path(root, "b")), label)
    assert load(root)[1].categories == ["cat", "building"]


def test_rgb_label_image_is_refused_asking_for_single_channel_ids(root: Path) -> None:
    label = draw_label((1,))
    Image.fromarray(np.stack([label] * 3, axis=-1)).save(label_path(root, "b"))
    with pytest.raises(DatasetError, match="single-channel class ids") as err:
        load(root)
    assert "labels/b.png" in str(err.value) and "convert" in str(err.value)


# --- what users get wrong ----------------------------------------------------------------------


def test_label_value_not_in_the_class_list_names_the_file_and_values(root: Path) -> None:
    label = draw_label((1,))
    label[30:, 40:] = 7
    label[30:, :5] = 9
    Image.fromarray(label).save(label_path(root, "b"))
    with pytest.raises(DatasetError, match=r"labels/b.png: label values 7, 9 are not in") as err:
        load(root)
    assert "classes.txt" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 background\n1 cat\n1 dog\n", r"classes.txt, line 3: id 1 is listed twice"),
        ("0 background\n\n1 cat\n2 cat\n", r"classes.txt, line 4: class name 'cat' is listed"),
        ("# ids\n0 background\ncat 1\n", r"classes.txt, line 3: expected `id name`"),
        ("0 background\n2\n", r"classes.txt, line 2: expected `id name`"),
        ("0 background\n-1 cat\n", r"classes.txt, line 2: expected `id name`"),
        ("# nothing yet\n", r"classes.txt lists no classes"),
        ("0 background\n255 void\n", r"every class is background"),
    ],
)
def test_bad_classes_file_names_the_file_and_line(root: Path, text: str, message: str) -> None:
    (root / "classes.txt").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load(root)


def test_class_names_may_hold_spaces_and_ignore_may_be_listed(root: Path) -> None:
    (root / "classes.txt").write_text("0 background\n1 tabby cat\n2 dog\n3 bird\n255 void\n")
    assert load(root)[1].categories == ["tabby cat"]


def test_without_a_class_list_each_id_is_a_class_named_by_it_with_a_warning(
    root: Path, caplog
) -> None:
    (root / "classes.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="samexp.data.classes"):
        splits = labelmap_splits(None, str(root), pipeline=Pipeline(64))
    assert (
        f"{root} holds no class list: each id its labels hold is a class named by that id"
        in caplog.text
    )
    assert all(n in caplog.text for n in ("classes.txt", "class_names.txt", "_classes.csv"))
    assert splits.train.class_names == ["1", "2", "3"]  # 0 background, 255 ignored
    assert {c for i in range(len(splits.test)) for c in splits.test[i].categories} <= {
        "1",
        "2",
        "3",
    }


def test_a_named_classes_file_that_is_missing_is_an_error_naming_it(root: Path) -> None:
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="classes file .*nope.txt does not exist"):
        labelmap_splits(None, str(root), pipeline=Pipeline(64), classes_file="nope.txt")


def test_image_without_label_names_the_image_and_the_labels_folder(root: Path) -> None:
    label_path(root, "b").unlink()
    with pytest.raises(DatasetError, match=r"have no label .* b.jpg") as err:
        load(root)
    assert str(root / "train" / "labels") in str(err.value)


def test_label_without_image_is_an_error(root: Path) -> None:
    (root / "train" / "images" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"label\(s\) have no image .* b.png"):
        load(root)


def test_label_saved_as_jpeg_is_refused(root: Path) -> None:
    label_path(root, "b").rename(root / "train" / "labels" / "b.jpg")
    with pytest.raises(DatasetError, match=r"must be PNG files .* b.jpg"):
        load(root)


def test_size_mismatch_names_both_files_and_sizes(root: Path) -> None:
    Image.fromarray(draw_label((1,), shape=(40, 50))).save(label_path(root, "b"))
    with pytest.raises(DatasetError, match="size mismatch") as err:
        load(root)
    message = str(err.value)
    assert "images/b.jpg" in message and "labels/b.png" in message
    assert "56×40" in message and "50×40" in message


@pytest.mark.parametrize("folder", ["labels", "images"])
def test_missing_folder_is_an_error_naming_it(root: Path, folder: str) -> None:
    for path in (root / "train" / folder).iterdir():
        path.unlink()
    (root / "train" / folder).rmdir()
    with pytest.raises(DatasetError, match=f"train/{folder} does not exist"):
        load(root)


def test_empty_images_folder_is_an_error(root: Path) -> None:
    for path in (root / "train" / "images").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="holds no image files"):
        load(root)


def test_split_where_no_image_has_a_target_is_an_error(tmp_path: Path) -> None:
    write_labelmap(tmp_path, {"train": {"e1": (), "e2": ()}})
    with pytest.raises(DatasetError, match="no label map contains a class to segment"):
        load(tmp_path)


def test_missing_split_and_root_are_errors_naming_them(root: Path) -> None:
    with pytest.raises(DatasetError, match="'val' not found"):
        load(root, "val")
    with pytest.raises(DatasetError, match="nowhere"):
        load(root / "nowhere")


def test_validation_reads_each_label_once_and_no_image_pixels(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = labelmap.read_label
    monkeypatch.setattr(labelmap, "read_label", lambda p, c: reads.append(p.name) or real(p, c))

    def no_decode(*args, **kwargs):
        raise AssertionError("construction must read images by header only")

    monkeypatch.setattr(labelmap, "read_image_rgb", no_decode)
    load(root)
    assert sorted(reads) == ["a.png", "b.png", "c.png", "empty.png"]


def test_label_drawn_on_stored_pixels_turns_with_an_exif_rotated_image(root: Path) -> None:
    image = np.asarray(Image.open(root / "train" / "images" / "b.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed turned 90° clockwise
    Image.fromarray(image).save(root / "train" / "images" / "b.jpg", exif=exif, quality=95)
    sample = load(root)[1]
    assert sample.original_size == (SHAPE[1], SHAPE[0])
    displayed = Image.fromarray(draw_label((1,))).transpose(Image.Transpose.ROTATE_270)
    np.testing.assert_array_equal(sample.gt_masks[0].numpy(), np.asarray(displayed) == 1)


# --- label maps as tools export them ----------------------------------------------------------

CVAT_LABELMAP = (
    "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncat:250,50,83::\ndog:61,61,245::\n"
)
CVAT_COLOURS = {0: (0, 0, 0), 1: (250, 50, 83), 2: (61, 61, 245)}


def _export_pair(image: Path, label: Path, classes: tuple[int, ...], mode: str) -> None:
    """A tiny image and its label: 8-bit ids ("id"), a palette PNG with labelme's 255 ignore
    border ("palette"), or CVAT's RGB colours ("rgb")."""
    image.parent.mkdir(parents=True, exist_ok=True)
    label.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*SHAPE, 3), 90, np.uint8)).save(image)
    ids = draw_label(classes)
    if mode == "rgb":
        ids[ids == IGNORE] = 0
        rgb = np.zeros((*SHAPE, 3), np.uint8)
        for class_id, colour in CVAT_COLOURS.items():
            rgb[ids == class_id] = colour
        Image.fromarray(rgb).save(label)
    elif mode == "palette":
        lbl = Image.fromarray(ids, mode="P")
        lbl.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 3 % 256, i)])
        lbl.save(label)
    else:
        Image.fromarray(ids).save(label)


def _cvat(root: Path) -> None:
    """CVAT "Segmentation mask 1.1": JPEGImages holds an image the list does not name."""
    (root / "labelmap.txt").write_text(CVAT_LABELMAP)
    for name, classes in (("a", (1, 2)), ("b", (1,)), ("c", (2,))):
        _export_pair(root / "JPEGImages" / f"{name}.jpg",
                     root / "SegmentationClass" / f"{name}.png", classes, "rgb")  # fmt: skip
        _export_pair(root / "JPEGImages" / f"{name}.jpg",
                     root / "SegmentationObject" / f"{name}.png", classes, "rgb")  # fmt: skip
    Image.fromarray(np.zeros((*SHAPE, 3), np.uint8)).save(root / "JPEGImages" / "unlisted.jpg")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("a\nb\nc\n")


def _labelme2voc(root: Path) -> None:
    (root / "class_names.txt").write_text("_background_\ncat\ndog\n")
    for name, classes in (("a", (1, 2)), ("b", (1,)), ("c", (2,))):
        _export_pair(root / "JPEGImages" / f"{name}.jpg",
                     root / "SegmentationClass" / f"{name}.png", classes, "palette")  # fmt: skip
        _export_pair(root / "JPEGImages" / f"{name}.jpg",
                     root / "SegmentationClassVisualization" / f"{name}.jpg", (), "id")  # fmt: skip


def _roboflow(root: Path) -> None:
    """Roboflow "Semantic Segmentation Masks": each split folder holds its images, their
    `_mask.png` labels and the same `_classes.csv`."""
    for split, names in (("train", ("a", "b")), ("valid", ("c",)), ("test", ("d",))):
        (root / split).mkdir(parents=True)
        (root / split / "_classes.csv").write_text(
            "Pixel Value, Class\n0, background\n1, cat\n2, dog\n"
        )
        for k, name in enumerate(names):
            stem = f"{name}_jpg.rf.{k}f3e"
            _export_pair(root / split / f"{stem}.jpg", root / split / f"{stem}_mask.png",
                         (1, 2), "id")  # fmt: skip


def _camvid(root: Path) -> None:
    (root / "classes.txt").write_text("0 background\n1 cat\n2 dog\n")
    for split, names in (("train", ("a", "b")), ("val", ("c",)), ("test", ("d",))):
        for name in names:
            _export_pair(root / split / f"{name}.png", root / f"{split}annot" / f"{name}.png",
                         (1, 2), "id")  # fmt: skip


def _images_split(root: Path) -> None:
    (root / "classes.txt").write_text("0 background\n1 cat\n2 dog\n")
    for split, names in (("train", ("a", "b", "c")), ("test", ("d",))):
        for name in names:
            _export_pair(root / "images" / split / f"{name}.jpg",
                         root / "labels" / split / f"{name}.png", (1, 2), "id")  # fmt: skip


@pytest.mark.parametrize(
    ("export", "overrides", "counts"),
    [
        (_cvat, {"train_split": "default", "test_split": None, "images_dir": "JPEGImages",
                 "labels_dir": "SegmentationClass",
                 "split_files": "ImageSets/Segmentation/{split}.txt"}, 3),
        (_labelme2voc, {"train_split": ".", "test_split": None, "images_dir": "JPEGImages",
                        "labels_dir": "SegmentationClass"}, 3),
        (_roboflow, {"val_split": "valid", "images_dir": ".", "labels_dir": ".",
                     "label_suffix": "_mask"}, 4),
        (_camvid, {"val_split": "val", "images_dir": "{split}", "labels_dir": "{split}annot"}, 4),
        (_images_split, {"images_dir": "images/{split}", "labels_dir": "labels/{split}"}, 4),
    ],
)  # fmt: skip
def test_label_map_exports_load_with_the_overrides_that_describe_them(
    tmp_path: Path, export, overrides: dict, counts: int
) -> None:
    export(tmp_path)
    splits = labelmap_splits(None, str(tmp_path), pipeline=Pipeline(64), **overrides)
    parts = [d for d in (splits.train, splits.val, splits.test) if d is not None]
    assert sum(len(d) for d in parts) == counts
    assert splits.train.class_names == ["cat", "dog"]
    names = [n for d in parts for n in d.names]
    assert "unlisted" not in names and len(set(names)) == counts
    for dataset in parts:
        for sample in dataset:
            assert sample.categories and set(sample.categories) <= {"cat", "dog"}
            union = sample.gt_masks.any(0).numpy()
            assert union.sum() == 10 * 12 * len(sample.categories)  # the blocks, never the border


def test_cvat_colour_labels_become_the_ids_of_the_colour_table(tmp_path: Path) -> None:
    _cvat(tmp_path)
    rgb = np.asarray(Image.open(tmp_path / "SegmentationClass" / "a.png"))
    sample = labelmap_splits(None, str(tmp_path), Pipeline(64), train_split="default", test_split=None,
                             test_fraction=0.3, images_dir="JPEGImages",
                             labels_dir="SegmentationClass",
                             split_files="ImageSets/Segmentation/{split}.txt")  # fmt: skip
    dataset = sample.train if "a" in sample.train.names else sample.test
    a = dataset[dataset.names.index("a")]
    assert a.categories == ["cat", "dog"]
    np.testing.assert_array_equal(a.gt_masks[0].numpy(), (rgb == CVAT_COLOURS[1]).all(-1))
    np.testing.assert_array_equal(a.gt_masks[1].numpy(), (rgb == CVAT_COLOURS[2]).all(-1))


def _cvat_splits(root: Path, **kwargs):
    overrides = {"train_split": "default", "test_split": None, "images_dir": "JPEGImages",
                 "labels_dir": "SegmentationClass",
                 "split_files": "ImageSets/Segmentation/{split}.txt"}  # fmt: skip
    return labelmap_splits(None, str(root), Pipeline(64), **{**overrides, **kwargs})


def test_a_colour_the_table_lacks_is_refused_naming_the_file_and_the_colour(tmp_path: Path) -> None:
    _cvat(tmp_path)
    rgb = np.asarray(Image.open(tmp_path / "SegmentationClass" / "b.png")).copy()
    rgb[0:2, 0:2] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "SegmentationClass" / "b.png")
    with pytest.raises(
        DatasetError, match=r"SegmentationClass/b.png: colour\(s\) \(1, 2, 3\)"
    ) as err:
        _cvat_splits(tmp_path)
    assert "labelmap.txt" in str(err.value)


@pytest.mark.parametrize("folder", ["JPEGImages", "SegmentationClass"])
def test_a_listed_name_without_its_files_is_refused_naming_it(tmp_path: Path, folder: str) -> None:
    _cvat(tmp_path)
    next((tmp_path / folder).glob("c.*")).unlink()
    with pytest.raises(DatasetError, match=r"default.txt lists 1 name\(s\) with no .* c;"):
        _cvat_splits(tmp_path)


def test_a_missing_split_list_names_the_lists_that_exist(tmp_path: Path) -> None:
    _cvat(tmp_path)
    with pytest.raises(DatasetError, match="lists in .*Segmentation: default; set "
                                           "dataset.train_split to one of them"):  # fmt: skip
        _cvat_splits(tmp_path, train_split="train")


def test_split_files_without_the_split_placeholder_is_refused(tmp_path: Path) -> None:
    _cvat(tmp_path)
    with pytest.raises(DatasetError, match="must hold {split}"):
        labelmap_splits(
            None, str(tmp_path), Pipeline(64), split_files="ImageSets/Segmentation/default.txt"
        )


# --- end to end --------------------------------------------------------------------------------


def test_splits_factory_builds_train_test_and_optional_val(root: Path) -> None:
    shutil.copytree(root / "test", root / "val")
    splits = labelmap_splits("pets", str(root), pipeline=Pipeline(64), val_split="val")
    assert splits.name == "pets"
    assert len(splits.train) == 3 and len(splits.test) == 2 and len(splits.val) == 2


@pytest.mark.slow
def test_run_reports_overall_and_per_class_metrics(root: Path, make_config) -> None:
    from samexp.runner import run

    cfg = make_config(
        "dataset=labelmap", f"dataset.root={root}", "model=tiny", "adapter=decoder",
        "trainer.epochs=1", "trainer.max_steps=2", "trainer.val_fraction=0",
    )  # fmt: skip
    metrics = run(cfg).metrics
    for key in (
        "final/test/iou",
        "final/test/iou/cat",
        "final/test/iou/dog",
        "final/test/iou/bird",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key


def test_a_label_map_dataset_follows_the_dataset_contract(root: Path) -> None:
    assert isinstance(load(root), SampleDataset)
