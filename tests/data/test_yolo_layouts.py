"""Specifications for where a YOLO dataset's files are: the layouts exporters write, Roboflow's
file names, where class names come from, and the refusals when a layout is not found."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.config.errors import DatasetError
from samexp.data.frame import Pipeline
from samexp.data.yolo import read_yolo_split, yolo_splits
from tests.conftest import IMG_SIZE

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SQUARE = "0 0 0 1 0 1 1 0 1\n"  # the whole image, class 0
NAMES = "names: [thing]\n"


def _files(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text; an image extension: an 8×8 image) under `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".jpg", ".png"):
            assert cv2.imwrite(str(path), np.full((8, 8, 3), len(rel), dtype=np.uint8))
        else:
            path.write_text(text)
    return root


def _pairs(images: str, labels: str, *stems: str) -> dict[str, str]:
    """One 8×8 image per stem in `images` with its whole-image polygon in `labels`."""
    return {
        **{f"{images}/{s}.jpg": "" for s in stems},
        **{f"{labels}/{s}.txt": SQUARE for s in stems},
    }


def _names(splits) -> tuple:
    parts = (splits.train, splits.val, splits.test)
    return tuple(sorted(p.names) if p is not None else None for p in parts)


# --- layouts ----------------------------------------------------------------------------------

LAYOUTS = {
    "ultralytics": (
        {"data.yaml": NAMES, **_pairs("images/train", "labels/train", "t"),
         **_pairs("images/val", "labels/val", "v"), **_pairs("images/test", "labels/test", "x")},
        {},
        (["t"], ["v"], ["x"]),
    ),
    "roboflow-dotdot-paths": (
        {"data.yaml": NAMES + "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n",
         **_pairs("train/images", "train/labels", "t"), **_pairs("valid/images", "valid/labels", "v"),
         **_pairs("test/images", "test/labels", "x")},
        {},
        (["t"], ["v"], ["x"]),
    ),
    "path-and-relative-splits": (
        {"data.yaml": "path: ../datasets/coco8-seg\ntrain: images/train\nval: images/val\n" + NAMES,
         **_pairs("images/train", "labels/train", "t"), **_pairs("images/val", "labels/val", "v")},
        {},
        (["t"], None, ["v"]),  # train + val only: val is what is evaluated
    ),
    "split-template-with-aliases": (
        {"data.yaml": NAMES, **_pairs("training/images", "training/labels", "t"),
         **_pairs("validation/images", "validation/labels", "v"),
         **_pairs("testing/images", "testing/labels", "x")},
        {"images_dir": "{split}/images"},
        (["t"], ["v"], ["x"]),
    ),
    "test-split-named-valid": (
        {"data.yaml": NAMES, **_pairs("train/images", "train/labels", "t"),
         **_pairs("valid/images", "valid/labels", "v")},
        {"images_dir": "{split}/images", "test_split": "valid"},
        (["t"], None, ["v"]),  # val_split=val finds valid/ too: it is the test split, once
    ),
    "dev-split-by-layout-search": (
        {"data.yaml": NAMES, **_pairs("images/train", "labels/train", "t"),
         **_pairs("images/dev", "labels/dev", "v"), **_pairs("images/test", "labels/test", "x")},
        {},
        (["t"], ["v"], ["x"]),
    ),
    "contract-call-without-yaml": (
        {**_pairs("images/train", "labels/train", "t0", "t1", "t2", "t3"),
         **_pairs("images/val", "labels/val", "v")},
        {"data_yaml": None, "images_dir": "images/{split}", "test_split": None},
        "held out",
    ),
    "flat-without-yaml-or-splits": (
        _pairs("images", "labels", "a", "b", "c", "d", "e"),
        {"data_yaml": None, "train_split": ".", "val_split": None, "test_split": None},
        "held out",
    ),
    "train-only-gets-a-test-split": (
        {"data.yaml": NAMES, **_pairs("images/train", "labels/train", "a", "b", "c")},
        {},
        "held out",
    ),
    "labels-beside-the-images": (
        {"data.yaml": NAMES, **_pairs("train", "train", "t"), **_pairs("test", "test", "x")},
        {"images_dir": "{split}"},
        (["t"], None, ["x"]),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("files", "options", "expected"), LAYOUTS.values(), ids=LAYOUTS.keys())
def test_each_exporters_layout_loads_with_its_splits(tmp_path, files, options, expected) -> None:
    splits = yolo_splits(str(_files(tmp_path, files)), Pipeline(IMG_SIZE), **options)
    if expected != "held out":
        assert _names(splits) == tuple(expected)
        return
    every = sorted(p.stem for p in tmp_path.rglob("*.jpg") if "val" not in p.parts)
    assert splits.held_out == 0.2 and len(splits.test) >= 1 and len(splits.train) >= 1
    assert sorted(splits.train.names + splits.test.names) == every
    assert splits.val is None or splits.val.names == ["v"]


def test_train_and_val_without_a_test_split_hold_out_test_when_asked(tmp_path: Path) -> None:
    files = {"data.yaml": NAMES, **_pairs("images/train", "labels/train", "a", "b", "c", "d"),
             **_pairs("images/val", "labels/val", "v")}  # fmt: skip
    for options in ({"test_split": None}, {"test_fraction": 0.5}):
        splits = yolo_splits(str(_files(tmp_path, files)), Pipeline(IMG_SIZE), **options)
        assert splits.val.names == ["v"] and splits.held_out is not None


# --- Roboflow's file names (the bug: the suffix was stripped twice) -----------------------------


@pytest.mark.parametrize(
    "stem",
    ["a_jpg.rf.3f2e8a91c", "a_jpg.rf.3f2e", "x_jpg.rf.8fd93a", "IMG 0001.v2", "plain"],
    ids=["roboflow", "docs-example", "issue-example", "dots-and-space", "plain"],
)
def test_a_label_is_the_image_path_with_only_its_extension_replaced(tmp_path, stem) -> None:
    _files(tmp_path, _pairs("images/train/sub", "labels/train/sub", stem))
    images = read_yolo_split(tmp_path / "images" / "train", ["thing"])
    assert [(im.name, im.label.name, im.categories) for im in images] == [
        (f"sub__{stem}", f"{stem}.txt", ["thing"])
    ]


# --- class names ------------------------------------------------------------------------------

CLASS_NAMES = {
    "data-yaml-list": ({"data.yaml": "names: [cat, dog]\n"}, "data.yaml", ["dog"]),
    "data-yaml-mapping": ({"data.yaml": "names: {0: cat, 1: dog}\n"}, "data.yaml", ["dog"]),
    "classes-txt": ({"classes.txt": "cat\ndog\n\n"}, None, ["dog"]),
    "darknet-obj-names": ({"obj.names": "cat\ndog\n"}, None, ["dog"]),
    "classes-names": ({"classes.names": "cat\ndog"}, None, ["dog"]),
    "ids-when-nothing-names-them": ({}, None, ["1"]),
}


@pytest.mark.parametrize(("files", "data_yaml", "expected"), CLASS_NAMES.values(),
                         ids=CLASS_NAMES.keys())  # fmt: skip
def test_class_names_come_from_data_yaml_a_names_file_or_the_ids(
    tmp_path, files, data_yaml, expected, caplog
) -> None:
    dog = "1 0 0 1 0 1 1\n"
    _files(tmp_path, {**files, "images/train/a.jpg": "", "labels/train/a.txt": dog,
                      "images/test/b.jpg": "", "labels/test/b.txt": dog})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="samexp.data.yolo_layout"):
        splits = yolo_splits(str(tmp_path), Pipeline(IMG_SIZE), data_yaml=data_yaml)
    assert splits.train[0].categories == splits.test[0].categories == expected
    if not files:
        assert "the classes are named by their ids (0, 1, ...)" in caplog.text


# --- refusals: one line, what exists and the override that fixes it ----------------------------

REFUSALS = {
    "no-train-folder": (
        {"data.yaml": NAMES, **_pairs("pics/train", "pics/train", "t")},
        {},
        r"no YOLO train images under .*: looked for images/train/, train/images/, "
        r"images/training/, training/images/; folders there: pics/; set dataset.train_split=<name> "
        r"and dataset.images_dir=",
    ),
    "no-data-yaml": (
        {"dataset.yaml": NAMES, **_pairs("images/train", "labels/train", "t")},
        {},
        r"data.yaml does not exist \(YAML files there: dataset.yaml\); point dataset.data_yaml at "
        r".* or set dataset.data_yaml=null",
    ),
    "labels-elsewhere": (
        {"data.yaml": NAMES, **_pairs("images/train", "annotations/train", "t")},
        {"test_split": None},
        r"none of the 1 images in .*images/train has a label file in .*labels/train \(it does not "
        r"exist; e.g. t.txt is not there\).*set dataset.images_dir",
    ),
    "data-yaml-lists-several-folders": (
        {"data.yaml": NAMES + "train: [images/a, images/b]\n", **_pairs("images/a", "labels/a", "t")},
        {},
        r"data.yaml's train: .* is not one folder.*set dataset.images_dir",
    ),
    "class-id-beyond-classes-txt": (
        {"classes.txt": "cat\n", "images/a.jpg": "", "labels/a.txt": "1 0 0 1 0 1 1\n"},
        {"data_yaml": None, "train_split": ".", "test_split": None},
        r"a.txt line 1: class id 1 is not in classes.txt \(0..0\)",
    ),
    "negative-class-id-without-names": (
        {"images/a.jpg": "", "labels/a.txt": "-1 0 0 1 0 1 1\n"},
        {"data_yaml": None, "train_split": ".", "test_split": None},
        r"a.txt line 1: class id -1 is not in the class ids \(0, 1, ...\)",
    ),
    "blank-line-in-classes-txt": (
        {"classes.txt": "cat\n\ndog\n", **_pairs("images", "labels", "a")},
        {"data_yaml": None, "train_split": ".", "test_split": None},
        r"classes.txt line 2 is blank: it is read as one class name per line",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("files", "options", "message"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_layout_not_found_is_refused_naming_what_exists_and_the_fix(
    tmp_path, files, options, message
) -> None:
    with pytest.raises(DatasetError, match=message):
        yolo_splits(str(_files(tmp_path, files)), Pipeline(IMG_SIZE), **options)
