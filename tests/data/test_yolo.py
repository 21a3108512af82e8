"""Specifications for the YOLO segmentation format, on tiny datasets written into tmp_path."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samexp.config.errors import DatasetError
from samexp.data.base import collate
from samexp.data.frame import Pipeline
from samexp.data.views import SampleDataset
from samexp.data.yolo import YoloDataset, read_yolo_split, yolo_splits
from tests.conftest import IMG_SIZE

# pycocotools' decode trips numpy 2's copy-keyword deprecation inside its Cython code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 48, 64
NAMES = "names: [square, blob]\n"


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _rect(class_id: int, y0: int, y1: int, x0: int, x1: int) -> str:
    """A label line whose rasterisation is exactly `_box(y0, y1, x0, x1)` (pixel corners / size)."""
    xs, ys = (x0 / W, x1 / W, x1 / W, x0 / W), (y0 / H, y0 / H, y1 / H, y1 / H)
    return f"{class_id} " + " ".join(f"{x:.6f} {y:.6f}" for x, y in zip(xs, ys, strict=True))


def _write_image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 60, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _write(root: Path, split: str, images: dict[str, str | None], roboflow: bool = False,
           data_yaml: str = NAMES) -> Path:  # fmt: skip
    """`images`: name -> label text (None: no label file). Ultralytics' layout unless `roboflow`."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(data_yaml)
    images_dir = root / split / "images" if roboflow else root / "images" / split
    for i, (name, label) in enumerate(images.items()):
        _write_image(images_dir / f"{name}.png", i)
        if label is not None:
            label_path = images_dir.parent.parent / "labels" / split / f"{name}.txt"
            if roboflow:
                label_path = root / split / "labels" / f"{name}.txt"
            label_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.write_text(label)
    return images_dir


SQUARE_A, BLOB_A = _box(10, 25, 10, 30), _box(5, 15, 40, 50)


@pytest.fixture
def tiny_yolo(tmp_path: Path) -> Path:
    """train: a (square + blob), b (a 1-point polygon only), c (no label); val: v (one blob)."""
    _write(tmp_path, "train", {
        "a": f"{_rect(0, 10, 25, 10, 30)}\n{_rect(1, 5, 15, 40, 50)}\n",
        "b": "0 0.1 0.1\n",
        "c": None,
    })  # fmt: skip
    _write(tmp_path, "val", {"v": _rect(1, 0, 10, 0, 10)})
    return tmp_path


def _train(root: Path) -> YoloDataset:
    return YoloDataset(
        read_yolo_split(root / "images" / "train", ["square", "blob"]), Pipeline(IMG_SIZE)
    )


def test_each_image_carries_all_its_polygons_as_masks_named_by_data_yaml(tiny_yolo) -> None:
    dataset = _train(tiny_yolo)
    assert isinstance(dataset, SampleDataset) and dataset.names == ["a"]
    sample = dataset[0]
    assert torch.equal(sample.gt_masks, torch.from_numpy(np.stack([SQUARE_A, BLOB_A])))
    assert sample.categories == ["square", "blob"] and sample.original_size == (H, W)
    assert collate([sample]).masks.shape == (2, IMG_SIZE, IMG_SIZE)


def test_summary_counts_background_images_and_short_polygons(tiny_yolo) -> None:
    assert _train(tiny_yolo).summary() == {
        "loaded": 1, "skipped_missing_label": 1, "skipped_empty_label": 0,
        "skipped_bad_polygon": 1, "skipped_no_instances": 1, "clipped_outside": 0,
    }  # fmt: skip


def test_an_empty_label_file_is_a_counted_background_image(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": _rect(0, 0, 10, 0, 10), "e": "\n"})
    assert _train(tmp_path).summary()["skipped_empty_label"] == 1


def test_names_may_be_a_mapping_of_class_ids(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": _rect(1, 0, 10, 0, 10)}, data_yaml="names: {0: cat, 1: dog}\n")
    _write(tmp_path, "val", {"v": _rect(0, 0, 10, 0, 10)}, data_yaml="names: {0: cat, 1: dog}\n")
    splits = yolo_splits(str(tmp_path), Pipeline(IMG_SIZE))
    assert splits.train[0].categories == ["dog"] and splits.test[0].categories == ["cat"]


def test_train_and_val_only_evaluates_val_as_the_test_split(tiny_yolo) -> None:
    splits = yolo_splits(str(tiny_yolo), Pipeline(IMG_SIZE), limit=1)
    assert splits.val is None and splits.test.names == ["v"] and splits.limit == 1
    assert splits.summary()["train/skipped_missing_label"] == 1


def test_a_data_yaml_path_escaping_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "images"
    _write_image(outside / "x.png")
    root = tmp_path / "root"
    _write(
        root, "val", {"v": _rect(0, 0, 10, 0, 10)}, data_yaml=NAMES + "train: ../elsewhere/images\n"
    )
    with pytest.raises(DatasetError, match="outside the dataset root"):
        yolo_splits(str(root), Pipeline(IMG_SIZE))


def test_data_yaml_is_read_safely_and_never_runs_code(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": _rect(0, 0, 10, 0, 10)},
           data_yaml="names: !!python/object/apply:os.system ['echo hacked']\n")  # fmt: skip
    with pytest.raises(DatasetError, match="not valid YAML"):
        yolo_splits(str(tmp_path), Pipeline(IMG_SIZE))


def test_a_label_file_without_its_image_is_refused_naming_it(tiny_yolo: Path) -> None:
    (tiny_yolo / "labels" / "train" / "ghost.txt").write_text(_rect(0, 0, 10, 0, 10))
    with pytest.raises(DatasetError, match=r"1 label file\(s\) .* no image .*: ghost.txt"):
        _train(tiny_yolo)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2 0.3", r"a.txt line 2 holds a box .*detection export"),
        ("2 0.1 0.1 0.5 0.1 0.5 0.5", r"a.txt line 2: class id 2 is not in data.yaml's names"),
        ("0 0.1 0.1 1.2 0.1 0.5 0.5", r"a.txt line 2: coordinates must be normalised to 0..1"),
        ("0 10 10 30 10 30 20", r"a.txt line 2: coordinates must be normalised"),
        ("0 0.1 0.1 0.5 0.1 0.5", r"a.txt line 2: 5 coordinates; a polygon is x y pairs"),
        ("0 0.1 x 0.5 0.1 0.5 0.5", r"a.txt line 2: not a number"),
        ("nan 0.1 0.1 0.5 0.1 0.5 0.5", r"a.txt line 2: class id nan is not in"),
        ("0.5 0.1 0.1 0.5 0.1 0.5 0.5", r"a.txt line 2: class id 0.5 is not in"),
    ],
    ids=[
        "box",
        "unknown-class",
        "outside-0-1",
        "pixel-coordinates",
        "odd",
        "not-a-number",
        "nan-class",
        "fractional-class",
    ],  # fmt: skip
)
def test_a_bad_label_line_is_refused_naming_file_and_line(tmp_path, line, message) -> None:
    _write(tmp_path, "train", {"a": f"{_rect(0, 0, 10, 0, 10)}\n{line}\n"})
    with pytest.raises(DatasetError, match=message):
        _train(tmp_path)


def test_coordinates_just_past_the_border_are_clipped_not_refused(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": "0 -0.001 -0.001 1.004 -0.001 1.004 1.004 -0.001 1.004"})
    assert _train(tmp_path)[0].gt_masks.all()


def test_missing_data_yaml_or_names_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": _rect(0, 0, 10, 0, 10)}, data_yaml="nc: 2\n")
    with pytest.raises(DatasetError, match="no 'names' list"):
        yolo_splits(str(tmp_path), Pipeline(IMG_SIZE))
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="data.yaml does not exist"):
        yolo_splits(str(tmp_path), Pipeline(IMG_SIZE))


def test_short_polygons_are_warned_about_once_per_split(tiny_yolo, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="samexp.data.yolo"):
        _train(tiny_yolo)
    assert [r.getMessage() for r in caplog.records if "fewer than 3" in r.getMessage()] == [
        f"{tiny_yolo / 'labels' / 'train'}: 1 polygon(s) with fewer than 3 points or no area "
        f"(b.txt line 1); skipping them"
    ]


def test_a_polygon_enclosing_no_pixel_is_skipped_and_counted(tmp_path: Path) -> None:
    _write(tmp_path, "train", {"a": f"{_rect(0, 0, 10, 0, 10)}\n0 0.1 0.1 0.5 0.1 0.9 0.1\n"})
    dataset = _train(tmp_path)
    assert dataset.summary()["skipped_bad_polygon"] == 1 and len(dataset[0].categories) == 1
    assert ("a", "line 2: polygon encloses no pixel") in dataset.skipped
