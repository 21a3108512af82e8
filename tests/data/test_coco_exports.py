"""Specifications for COCO files as annotation tools export them (Roboflow, CVAT, labelme2coco),
each quirk reproduced by a tiny export written into tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from samexp.data.coco import CocoDataset, coco_splits
from samexp.data.coco_json import read_coco
from samexp.errors import DatasetError, SamexpError
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
    splits = coco_splits("rf", str(root), IMG_SIZE)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 2)
    assert splits.val[0].image_path == str(root / "valid" / "valid0_jpg.rf.0000.png")
    assert splits.summary()["val/loaded"] == 2


def test_roboflow_placeholder_category_is_not_a_class(tmp_path: Path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "valid": 2, "test": 2})
    splits = coco_splits("rf", str(root), IMG_SIZE)
    assert splits.train.class_names == ["blob", "square"]
    with pytest.raises(DatasetError, match=r"\['cat'\] not found; available: blob, square$"):
        coco_splits("rf", str(root), IMG_SIZE, categories=["cat"])


def test_roboflow_placeholders_supercategory_none_is_not_a_class_either(tmp_path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "test": 2})
    splits = coco_splits("rf", str(root), IMG_SIZE, group_by="supercategory")
    assert splits.train.class_names == ["shapes-x7k2"]
    with pytest.raises(DatasetError, match=r"\['none'\] not found"):
        coco_splits("rf", str(root), IMG_SIZE, group_by="supercategory", categories=["none"])


def test_a_roboflow_export_without_a_test_part_is_evaluated_on_valid(tmp_path: Path) -> None:
    root = _roboflow(tmp_path, {"train": 3, "valid": 2})
    splits = coco_splits("rf", str(root), IMG_SIZE)
    assert (len(splits.train), len(splits.test), splits.val) == (3, 2, None)


def test_valid_is_accepted_as_the_val_part_of_a_pre_split_dataset(tmp_path: Path) -> None:
    for part, count in {"train": 3, "valid": 2, "test": 1}.items():
        _export(tmp_path / part / "annotations.json", [f"{part}{i}.png" for i in range(count)],
                tmp_path / part / "images")  # fmt: skip
    splits = coco_splits("coco", str(tmp_path), IMG_SIZE)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 2, 1)


# --- CVAT and labelme2coco: where file_name is relative to ------------------------------------


def _cvat(root: Path, subset: str = "default") -> Path:
    """CVAT's COCO 1.0: annotations/instances_<subset>.json, images/ with sub-folders."""
    names = ["site_a/0001.png", "site_a/0002.png", "site_b/0001.png", "site_b/0003.png"]
    return _export(root / "annotations" / f"instances_{subset}.json", names, root / "images")


def test_cvat_export_with_image_sub_folders_loads_without_overrides(tmp_path: Path) -> None:
    _cvat(tmp_path)
    splits = coco_splits("cvat", str(tmp_path), IMG_SIZE, val_size=0.25)
    names = sorted(splits.train.names + splits.test.names)
    assert names == ["0002", "0003", "site_a__0001.png", "site_b__0001.png"]
    assert (len(splits.train), len(splits.test)) == (3, 1)


def test_several_cvat_annotation_files_are_an_error_naming_the_override(tmp_path) -> None:
    _cvat(tmp_path, "default")
    _cvat(tmp_path, "train")
    match = r"2 CVAT annotation files .*dataset.annotations=annotations/instances_default.json"
    with pytest.raises(DatasetError, match=match):
        coco_splits("cvat", str(tmp_path), IMG_SIZE)
    chosen = coco_splits("cvat", str(tmp_path), IMG_SIZE,
                         annotations="annotations/instances_train.json")  # fmt: skip
    assert len(chosen.train) + len(chosen.test) == 4


def test_labelme2coco_file_names_relative_to_the_root_are_found(tmp_path: Path) -> None:
    names = [f"JPEGImages/img{i}.png" for i in range(3)]
    _export(tmp_path / "annotations.json", names, tmp_path)
    splits = coco_splits("labelme", str(tmp_path), IMG_SIZE, val_size=0.34)
    paths = sorted(s.image_path for part in (splits.train, splits.test) for s in part)
    assert paths == [str(tmp_path / name) for name in names]


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
        coco_splits("coco", str(tmp_path / "data"), IMG_SIZE)
    assert json_path.is_file()


# --- box-only files --------------------------------------------------------------------------


def test_a_box_only_file_is_one_error_saying_it_has_boxes_but_no_masks(tmp_path, caplog) -> None:
    _export(tmp_path / "annotations.json", ["a.png", "b.png"], tmp_path / "images",
            segmentation=[])  # fmt: skip
    with caplog.at_level(logging.WARNING), pytest.raises(DatasetError) as err:
        coco_splits("boxes", str(tmp_path), IMG_SIZE)
    assert "3 annotations have 3 boxes but no masks" in str(err.value)
    assert "export polygons or masks" in str(err.value) and "\n" not in str(err.value)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_empty_polygons_among_masks_are_skipped_with_one_warning_per_file(tmp_path, caplog) -> None:
    json_path = _export(tmp_path / "annotations.json", ["a.png", "b.png"], tmp_path / "images")
    data = json.loads(json_path.read_text())
    data["annotations"] += [_ann(200 + i, 1, 1, []) for i in range(7)]
    json_path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        dataset = CocoDataset(read_coco(json_path, tmp_path / "images"), IMG_SIZE)
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
        coco_splits("partial", str(tmp_path), IMG_SIZE)


def test_missing_images_skip_counts_them_and_warns_once(tmp_path, caplog) -> None:
    json_path = _partial_download(tmp_path)
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        images = read_coco(json_path, tmp_path / "images", missing_images="skip")
    dataset = CocoDataset(images, IMG_SIZE)
    assert dataset.names == ["a", "b", "d", "f"]
    summary = dataset.summary()
    assert (summary["loaded"], summary["skipped_missing_image"]) == (4, 2)
    assert summary["skipped_no_instances"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of its 6 images are missing" in warnings[0]
    assert "images: c.png, e.png" in warnings[0]


def test_missing_images_skip_is_counted_in_the_splits_summary(tmp_path: Path) -> None:
    _partial_download(tmp_path)
    summary = coco_splits("partial", str(tmp_path), IMG_SIZE, missing_images="skip").summary()
    assert summary["train/skipped_missing_image"] + summary["test/skipped_missing_image"] == 2
    assert summary["train/loaded"] + summary["test/loaded"] == 4


def test_missing_images_accepts_error_or_skip_only(tmp_path: Path) -> None:
    _partial_download(tmp_path)
    with pytest.raises(SamexpError, match=r"dataset.missing_images='drop': must be one of error"):
        coco_splits("partial", str(tmp_path), IMG_SIZE, missing_images="drop")
