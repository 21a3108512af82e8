"""Specifications for COCO files as annotation tools export them (Roboflow, CVAT, labelme2coco),
each quirk reproduced by a tiny export written into tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from samexp.config.errors import DatasetError, SamexpError
from samexp.data.coco import CocoDataset, coco_splits
from samexp.data.coco_json import read_coco
from samexp.data.frame import Pipeline
from tests.conftest import IMG_SIZE
from tests.data.test_coco import CATEGORIES, _ann, _image_entry, _rect_polygon, _write_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SQUARE = [_rect_polygon(10, 20, 10, 20)]
# Roboflow's categories: a placeholder id 0 named after the project, used by no annotation
ROBOFLOW_CATEGORIES = [
    {"id": 0, "name": "shapes-x7k2", "supercategory": "none"},
    {"id": 1, "name": "square", "supercategory": "shapes-x7k2"},
    {"id": 2, "name": "blob", "supercategory": "shapes-x7k2"},
]


def _export(json_path: Path, file_names: list[str], image_root: Path | None,
            categories: list[dict] = CATEGORIES, segmentation=SQUARE) -> Path:  # fmt: skip
    """A COCO file listing `file_names` (one square each, category 1, blob on the first),
    their images written under `image_root` (None: not written)."""
    images = [_image_entry(i, name) for i, name in enumerate(file_names)]
    anns = [_ann(100 + i, i, 1, segmentation, bbox=[10, 10, 10, 10]) for i in range(len(images))]
    anns.append(_ann(99, 0, 2, segmentation, bbox=[10, 10, 10, 10]))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": categories}
    json_path.write_text(json.dumps(data))
    for i, name in enumerate(file_names if image_root else []):
        _write_image(image_root / name, seed=i)
    return json_path


def _roboflow(root: Path, parts: dict[str, int]) -> Path:
    """Roboflow's COCO export: <part>/_annotations.coco.json beside that part's images."""
    for part, count in parts.items():
        names = [f"{part}{i}_jpg.rf.{i:04x}.png" for i in range(count)]
        _export(root / part / "_annotations.coco.json", names, root / part, ROBOFLOW_CATEGORIES)
    return root


# --- Roboflow --------------------------------------------------------------------------------


def test_roboflow_export_loads_without_overrides_as_train_val_and_test(tmp_path: Path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "valid": 2, "test": 2})
    splits = coco_splits("rf", str(root), Pipeline(IMG_SIZE))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 2)
    assert splits.val[0].image_path == str(root / "valid" / "valid0_jpg.rf.0000.png")
    assert splits.summary()["val/loaded"] == 2


def test_roboflow_placeholder_category_is_not_a_class(tmp_path: Path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "valid": 2, "test": 2})
    splits = coco_splits("rf", str(root), Pipeline(IMG_SIZE))
    assert splits.train.class_names == ["blob", "square"]
    with pytest.raises(DatasetError, match=r"\['cat'\] not found; available: blob, square$"):
        coco_splits("rf", str(root), Pipeline(IMG_SIZE), categories=["cat"])


def test_roboflow_placeholders_supercategory_none_is_not_a_class_either(tmp_path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "test": 2})
    splits = coco_splits("rf", str(root), Pipeline(IMG_SIZE), group_by="supercategory")
    assert splits.train.class_names == ["shapes-x7k2"]
    with pytest.raises(DatasetError, match=r"\['none'\] not found"):
        coco_splits(
            "rf", str(root), Pipeline(IMG_SIZE), group_by="supercategory", categories=["none"]
        )


def test_a_roboflow_export_without_a_test_part_is_evaluated_on_valid(tmp_path: Path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "valid": 2})
    splits = coco_splits("rf", str(root), Pipeline(IMG_SIZE))
    assert (len(splits.train), len(splits.test), splits.val) == (3, 2, None)


def test_valid_is_accepted_as_the_val_part_of_a_pre_split_dataset(tmp_path: Path) -> None:
    for part, count in {"train": 3, "valid": 2, "test": 1}.items():
        _export(tmp_path / part / "annotations.json", [f"{part}{i}.png" for i in range(count)],
                tmp_path / part / "images")  # fmt: skip
    splits = coco_splits("coco", str(tmp_path), Pipeline(IMG_SIZE))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 1)


# --- which file is which split: every layout, as its tool writes it ---------------------------


def _names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}.png" for i in range(count)]


def _cvat(root: Path, subsets: dict[str, int], nested: bool = False) -> Path:
    """CVAT's COCO 1.0: annotations/instances_<subset>.json, images/ (images/<subset>/)."""
    for subset, count in subsets.items():
        images = root / "images" / subset if nested else root / "images"
        _export(root / "annotations" / f"instances_{subset}.json", _names(subset, count), images)
    return root


def _labelme_example(root: Path) -> None:
    """labelme's examples/instance_segmentation/labelme2coco.py: file_name JPEGImages/x.jpg."""
    _export(root / "annotations.json", [f"JPEGImages/{n}" for n in _names("x", 5)], root)
    (root / "Visualization").mkdir()
    _write_image(root / "Visualization" / "x0.jpg")  # its preview images, not data


def _labelme2coco_split(root: Path) -> None:
    """The labelme2coco package with train_split_rate: train.json + val.json in the labelme
    folder, file_name its imagePath (beside the LabelMe JSONs, which are not COCO)."""
    _export(root / "train.json", _names("a", 4), root)
    _export(root / "val.json", _names("b", 2), root)
    (root / "a0.json").write_text(
        json.dumps({"version": "5.4.1", "shapes": [], "imagePath": "a0.png"})
    )


def _labelme2coco_absolute(root: Path) -> None:
    """labelme2coco run on an absolute labelme folder: absolute file_names."""
    _export(root / "dataset.json", [str(root / "labelme" / n) for n in _names("c", 5)], root)


def _labelme2coco_parent(root: Path) -> None:
    """imagePath ../images/x.png, kept as file_name: relative to a sibling of images/."""
    _export(root / "dataset.json", [f"../photos/{n}" for n in _names("d", 5)], None)
    for i, name in enumerate(_names("d", 5)):
        _write_image(root / "photos" / name, seed=i)


def _coco2017(root: Path) -> None:
    """COCO's own: annotations/instances_<split>2017.json beside captions_* and person_keypoints_*,
    images in <split>2017/."""
    for split, count in (("train", 4), ("val", 2)):
        _export(root / "annotations" / f"instances_{split}2017.json", _names(split, count),
                root / f"{split}2017")  # fmt: skip
        _export(root / "annotations" / f"person_keypoints_{split}2017.json", [], None)


LAYOUTS = {
    # name: (write it, overrides, (train, val, test) image counts; -1: held out of train)
    "labelme example": (_labelme_example, {}, "single", (5, 0, -1)),
    "labelme2coco train.json+val.json": (_labelme2coco_split, {}, "single", (4, 0, 2)),
    "labelme2coco absolute": (_labelme2coco_absolute, {}, "single", (5, 0, -1)),
    "labelme2coco ../": (_labelme2coco_parent, {}, "single", (5, 0, -1)),
    "cvat default": (lambda r: _cvat(r, {"default": 5}), {}, "cvat", (5, 0, -1)),
    "cvat default in images/default": (
        lambda r: _cvat(r, {"default": 5}, nested=True),
        {},
        "cvat",
        (5, 0, -1),
    ),  # fmt: skip
    "cvat train+val": (lambda r: _cvat(r, {"train": 4, "val": 2}), {}, "cvat", (4, 0, 2)),
    "cvat Train+Validation+Test nested": (
        lambda r: _cvat(r, {"Train": 4, "Validation": 2, "Test": 3}, nested=True),
        {},
        "cvat",
        (4, 2, 3),
    ),
    "cvat default+val: default is train": (
        lambda r: _cvat(r, {"default": 4, "val": 2}),
        {},
        "cvat",
        (4, 0, 2),
    ),  # fmt: skip
    "coco 2017": (_coco2017, {}, "cvat", (4, 0, 2)),
    "by hand: {split} templates": (
        lambda r: _cvat(r, {"train": 4, "valid": 2, "test": 3}, nested=True),
        {"annotations": "annotations/instances_{split}.json", "images_dir": "images/{split}"},
        "template",
        (4, 2, 3),
    ),
    "roboflow train only": (lambda r: _roboflow(r, {"train": 5}), {}, "roboflow", (5, 0, -1)),
    "one file, test_split=null": (
        lambda r: _cvat(r, {"train": 4, "val": 2}),
        {"test_split": None},
        "cvat",
        (4, 2, -1),
    ),  # fmt: skip
    "labelme2coco, test_split=val": (
        _labelme2coco_split,
        {"test_split": "val"},
        "single",
        (4, 0, 2),
    ),  # fmt: skip
    "d's arguments: train_split=. test_split=null": (
        _labelme_example,
        {"annotations": "annotations.json", "train_split": ".", "test_split": None},
        "single",
        (5, 0, -1),
    ),  # fmt: skip
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_every_export_loads_with_the_right_file_for_each_split(tmp_path, caplog, layout) -> None:
    write, overrides, kind, (train, val, test) = LAYOUTS[layout]
    write(tmp_path)
    with caplog.at_level(logging.INFO, logger="samexp.data.coco"):
        splits = coco_splits("x", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.3 if test < 0 else None,
                             **overrides)  # fmt: skip
    assert f"COCO layout '{kind}'" in caplog.text
    counts = (len(splits.train), len(splits.val) if splits.val else 0, len(splits.test))
    if test < 0:  # held out of train
        assert counts[1] == val and counts[0] + counts[2] == train and splits.held_out == 0.3
    else:
        assert counts == (train, val, test) and splits.held_out is None
    paths = [Path(p) for part in (splits.train, splits.test) for p in part.image_paths]
    assert all(p.is_relative_to(tmp_path) and p.is_file() for p in paths)


def test_the_log_says_which_file_is_used_for_which_split(tmp_path: Path, caplog) -> None:
    _cvat(tmp_path, {"train": 4, "val": 2}, nested=True)
    with caplog.at_level(logging.INFO):
        coco_splits("cvat", str(tmp_path), Pipeline(IMG_SIZE))
    said = [r.getMessage() for r in caplog.records]
    assert "cvat: COCO layout 'cvat': train: annotations/instances_train.json (images: " \
           "images/train); val: none; test: annotations/instances_val.json (images: images/val)" \
           in said  # fmt: skip
    assert any("instances_val.json is the test split (what is evaluated); dataset.test_split=null"
               " holds a test split out of train instead" in s for s in said)  # fmt: skip


def test_a_test_fraction_keeps_val_for_validation_and_holds_the_test_split_out(tmp_path) -> None:
    _cvat(tmp_path, {"train": 6, "val": 2})
    splits = coco_splits("cvat", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.3)
    assert len(splits.val) == 2 and len(splits.train) + len(splits.test) == 6


def test_a_test_file_left_out_by_test_split_null_is_said(tmp_path: Path, caplog) -> None:
    _roboflow(tmp_path, {"train": 4, "valid": 2, "test": 2})
    with caplog.at_level(logging.INFO, logger="samexp.data.coco"):
        splits = coco_splits(
            "rf", str(tmp_path), Pipeline(IMG_SIZE), test_split=None, test_fraction=0.3
        )
    assert "test/_annotations.coco.json is not used: dataset.test_split=null" in caplog.text
    assert len(splits.val) == 2 and len(splits.train) + len(splits.test) == 4


REFUSALS = {
    # name: (write it, overrides, what the refusal says)
    "a file of no split": (
        lambda r: _cvat(r, {"train": 3, "val": 2, "extra": 2}),
        {},
        r"holds 3 COCO files and annotations/instances_extra.json names no split .*"
        r"dataset.annotations=annotations/instances_extra.json, or .*test_split=extra",
    ),
    "two files for one split": (
        lambda r: _cvat(r, {"train": 3, "training": 2}),
        {},
        r"2 COCO files for the train split: annotations/instances_train.json, "
        r"annotations/instances_training.json; choose one with dataset.annotations=",
    ),
    "template without the train file": (
        lambda r: _cvat(r, {"default": 3}),
        {"annotations": "annotations/instances_{split}.json"},
        r"instances_train.json does not exist \(nor for training\); COCO files in .*annotations: "
        r"annotations/instances_default.json; .*dataset.train_split=default",
    ),
    "template images folder missing": (
        lambda r: _cvat(r, {"train": 3}, nested=True),
        {"images_dir": "imgs/{split}"},
        r"dataset.images_dir=imgs/{split}: .*imgs/train does not exist .*folders in .*: none",
    ),
    "named file missing": (
        lambda r: _cvat(r, {"default": 3}),
        {"annotations": "coco.json"},
        r"dataset.annotations=coco.json: .*coco.json does not exist .*COCO files here: "
        r"annotations/instances_default.json",
    ),
    "an image outside the root": (
        lambda r: _export(r / "dataset.json", ["../../elsewhere/x.png", "y.png"], r / "images"),
        {},
        r"file_name '../../elsewhere/x.png', which is outside .*point dataset.root at",
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_a_layout_refusal_names_the_override_and_what_exists(tmp_path, case) -> None:
    write, overrides, message = REFUSALS[case]
    write(tmp_path)
    with pytest.raises(DatasetError, match=message) as err:
        coco_splits("x", str(tmp_path), Pipeline(IMG_SIZE), **overrides)
    assert "\n" not in str(err.value)


def test_several_cvat_files_are_used_alone_with_the_override_the_refusal_names(tmp_path) -> None:
    _cvat(tmp_path, {"train": 3, "val": 2, "extra": 2})
    alone = coco_splits("cvat", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.5,
                        annotations="annotations/instances_extra.json")  # fmt: skip
    assert sorted(alone.train.names + alone.test.names) == ["extra0", "extra1"]


def test_cvat_export_with_image_sub_folders_loads_without_overrides(tmp_path: Path) -> None:
    names = ["site_a/0001.png", "site_a/0002.png", "site_b/0001.png", "site_b/0003.png"]
    _export(tmp_path / "annotations" / "instances_default.json", names, tmp_path / "images")
    splits = coco_splits("cvat", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.25)
    names = sorted(splits.train.names + splits.test.names)
    assert names == ["0002", "0003", "site_a__0001.png", "site_b__0001.png"]


def test_a_file_name_is_looked_up_in_images_then_beside_the_json_then_in_the_root(
    tmp_path: Path,
) -> None:
    json_path = _export(tmp_path / "ann" / "coco.json", ["x.png", "y.png", "z.png"], None)
    _write_image(tmp_path / "images" / "x.png")
    _write_image(tmp_path / "ann" / "x.png")  # not used: images/ comes first
    _write_image(tmp_path / "ann" / "y.png")
    _write_image(tmp_path / "z.png")
    found = read_coco(json_path, tmp_path / "images", root=tmp_path)
    assert [im.path for im in found] == [
        tmp_path / "images" / "x.png", tmp_path / "ann" / "y.png", tmp_path / "z.png",
    ]  # fmt: skip


def test_a_file_name_escaping_the_root_is_refused_even_when_the_file_exists(tmp_path) -> None:
    _write_image(tmp_path / "outside.png")
    json_path = _export(tmp_path / "data" / "annotations.json", ["../outside.png"], None)
    with pytest.raises(DatasetError, match=r"file_name '../outside.png', which is outside .*data"):
        coco_splits("coco", str(tmp_path / "data"), Pipeline(IMG_SIZE))
    assert json_path.is_file()


# --- box-only files --------------------------------------------------------------------------


def test_a_box_only_file_is_one_error_saying_it_has_boxes_but_no_masks(tmp_path, caplog) -> None:
    _export(tmp_path / "annotations.json", ["a.png", "b.png"], tmp_path / "images",
            segmentation=[])  # fmt: skip
    with caplog.at_level(logging.WARNING), pytest.raises(DatasetError) as err:
        coco_splits("boxes", str(tmp_path), Pipeline(IMG_SIZE))
    assert "3 annotations have 3 boxes but no masks" in str(err.value)
    assert "export polygons or masks" in str(err.value) and "\n" not in str(err.value)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_empty_polygons_among_masks_are_skipped_with_one_warning_per_file(tmp_path, caplog) -> None:
    json_path = _export(tmp_path / "annotations.json", ["a.png", "b.png"], tmp_path / "images")
    data = json.loads(json_path.read_text())
    data["annotations"] += [_ann(200 + i, 1, 1, []) for i in range(7)]
    json_path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        dataset = CocoDataset(read_coco(json_path, tmp_path / "images"), Pipeline(IMG_SIZE))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "7 annotation(s) have a polygon with fewer" in warnings[0]
    assert dataset.summary()["skipped_bad_polygon"] == 7


# --- missing image files ---------------------------------------------------------------------


def _partial_download(root: Path) -> Path:
    """Six images listed, the files of two (c, e) never arrived."""
    json_path = _export(root / "annotations.json", [f"{n}.png" for n in "abcdef"], root / "images")
    for name in ("c.png", "e.png"):
        (root / "images" / name).unlink()
    return json_path


def test_missing_image_files_are_an_error_naming_the_override_by_default(tmp_path) -> None:
    _partial_download(tmp_path)
    match = (
        r"2 image\(s\) listed .* missing from .*images: c.png, e.png.* dataset.missing_images=skip"
    )
    with pytest.raises(DatasetError, match=match):
        coco_splits("partial", str(tmp_path), Pipeline(IMG_SIZE))


def test_missing_images_skip_counts_them_and_warns_once(tmp_path, caplog) -> None:
    json_path = _partial_download(tmp_path)
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        images = read_coco(json_path, tmp_path / "images", missing_images="skip")
    dataset = CocoDataset(images, Pipeline(IMG_SIZE))
    assert dataset.names == ["a", "b", "d", "f"]
    summary = dataset.summary()
    assert (summary["loaded"], summary["skipped_missing_image"]) == (4, 2)
    assert summary["skipped_no_instances"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of its 6 images are missing" in warnings[0]
    assert "images: c.png, e.png" in warnings[0]


def test_missing_images_skip_is_counted_in_the_splits_summary(tmp_path: Path) -> None:
    _partial_download(tmp_path)
    summary = coco_splits(
        "partial", str(tmp_path), Pipeline(IMG_SIZE), missing_images="skip"
    ).summary()
    assert summary["train/skipped_missing_image"] + summary["test/skipped_missing_image"] == 2
    assert summary["train/loaded"] + summary["test/loaded"] == 4


def test_missing_images_accepts_error_or_skip_only(tmp_path: Path) -> None:
    _partial_download(tmp_path)
    with pytest.raises(SamexpError, match=r"dataset.missing_images='drop': must be one of error"):
        coco_splits("partial", str(tmp_path), Pipeline(IMG_SIZE), missing_images="drop")
