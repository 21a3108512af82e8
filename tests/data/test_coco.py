"""Specifications for the COCO format, on tiny COCO files written into tmp_path."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError, SamexpError
from samexp.data.base import collate
from samexp.data.coco import CocoDataset, coco_splits
from samexp.data.coco_json import read_coco
from samexp.data.frame import Pipeline
from samexp.data.views import SampleDataset
from tests.conftest import IMG_SIZE

# pycocotools' decode trips numpy 2's copy-keyword deprecation inside its Cython code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 48, 64
CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "blob"}]


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """H×W bool with rows y0:y1 and columns x0:x1 set."""
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _rect_polygon(y0: int, y1: int, x0: int, x1: int) -> list[float]:
    """The polygon whose COCO rasterisation is exactly `_box(y0, y1, x0, x1)`."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a zero run."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _ann(ann_id: int, image_id: int, category: int, segmentation, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category,
            "segmentation": segmentation, "iscrowd": 0, **extra}  # fmt: skip


def _image_entry(image_id: int, file_name: str, h: int = H, w: int = W) -> dict:
    return {"id": image_id, "file_name": file_name, "height": h, "width": w}


def _write_image(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def _write(folder: Path, images: list[dict], annotations: list[dict], write_images: bool = True,
           categories: list[dict] = CATEGORIES) -> Path:  # fmt: skip
    """`<folder>/annotations.json` and (unless told not to) every listed image under images/."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "annotations.json").write_text(json.dumps(data))
    for i, entry in enumerate(images if write_images else []):
        _write_image(folder / "images" / entry["file_name"], entry["height"], entry["width"], i)
    return folder / "annotations.json"


# The tiny file most tests read: what every annotation should decode to.
SQUARE_A = _box(10, 25, 10, 30)  # polygon
BLOB_A = _box(5, 15, 40, 50) | _box(30, 40, 40, 55)  # two polygons, one instance
CROWD_A = _box(30, 45, 0, 20)  # uncompressed RLE, iscrowd=1
BLOB_B = np.zeros((H, W), dtype=np.uint8)
cv2.ellipse(BLOB_B, (40, 24), (15, 10), 30, 0, 360, 1, -1)
BLOB_B = BLOB_B.astype(bool)  # uncompressed RLE
SQUARE_B = _box(0, 10, 0, 10)  # compressed RLE


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """a.png: 2 instances + a crowd; b.png: 2 RLE instances; c.png: only a 2-point polygon."""
    images = [_image_entry(1, "a.png"), _image_entry(2, "b.png"), _image_entry(3, "c.png")]
    annotations = [
        _ann(11, 1, 1, [_rect_polygon(10, 25, 10, 30)]),
        _ann(12, 1, 2, [_rect_polygon(5, 15, 40, 50), _rect_polygon(30, 40, 40, 55)]),
        _ann(13, 1, 1, _uncompressed_rle(CROWD_A), iscrowd=1),
        _ann(21, 2, 2, _uncompressed_rle(BLOB_B)),
        _ann(22, 2, 1, _compressed_rle(SQUARE_B)),
        _ann(31, 3, 1, [[1, 1, 5, 5]]),
    ]
    return _write(tmp_path, images, annotations)


def _dataset(annotations: Path, **kwargs) -> CocoDataset:
    return CocoDataset(
        read_coco(annotations, annotations.parent / "images", **kwargs), Pipeline(IMG_SIZE)
    )


# --- decoding --------------------------------------------------------------------------------


def test_polygons_and_both_rle_kinds_decode_to_the_drawn_masks(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco)
    a, b = dataset[0], dataset[1]
    assert torch.equal(a.gt_masks, torch.from_numpy(np.stack([SQUARE_A, BLOB_A])))
    assert torch.equal(b.gt_masks, torch.from_numpy(np.stack([BLOB_B, SQUARE_B])))


def test_a_slanted_polygon_covers_what_cv2_fills_up_to_its_boundary(tmp_path: Path) -> None:
    triangle = [10, 10, 50, 10, 30, 40]
    _write(tmp_path, [_image_entry(1, "t.png")], [_ann(1, 1, 1, [triangle])])
    mask = _dataset(tmp_path / "annotations.json")[0].gt_masks[0].numpy()
    filled = np.zeros((H, W), dtype=np.uint8)
    cv2.fillPoly(filled, [np.array(triangle).reshape(-1, 2).astype(np.int32)], 1)
    filled = filled.astype(bool)
    assert (mask & filled).sum() / (mask | filled).sum() > 0.85
    perimeter = 40 + 2 * 36
    assert abs(int(mask.sum()) - 40 * 30 / 2) < perimeter / 2  # the triangle's area, ± half edges


def test_each_image_carries_all_its_instances_named_by_category(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco)
    assert dataset.names == ["a", "b"]
    assert [dataset[i].categories for i in range(2)] == [["square", "blob"], ["blob", "square"]]
    batch = collate([dataset[0], dataset[1]])
    assert batch.masks.shape == (4, IMG_SIZE, IMG_SIZE)
    assert batch.instance_image.tolist() == [0, 0, 1, 1]
    assert batch.categories == ["square", "blob", "blob", "square"]


def test_samples_are_sam_framed_with_the_original_size_kept(tiny_coco: Path) -> None:
    sample = _dataset(tiny_coco)[0]
    assert sample.image.shape == (3, IMG_SIZE, IMG_SIZE) and sample.image.dtype == torch.uint8
    assert sample.original_size == (H, W) and sample.input_size == (192, 256)
    assert sample.masks.shape == (2, IMG_SIZE, IMG_SIZE) and not sample.masks[:, 192:].any()


def test_crowd_annotations_are_not_targets_but_are_counted(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco)
    assert not any((m & torch.from_numpy(CROWD_A)).any() for m in dataset[0].gt_masks)
    assert dataset.summary()["skipped_crowd"] == 1
    assert ("a", "annotation 13: crowd region") in dataset.skipped


def test_summary_counts_loaded_images_and_every_skip(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco)
    assert dataset.summary() == {
        "loaded": 2, "skipped_crowd": 1, "skipped_category": 0, "skipped_bad_polygon": 1,
        "skipped_small": 0, "skipped_no_instances": 1, "skipped_missing_image": 0,
        "clipped_outside": 0,
    }  # fmt: skip
    assert len(dataset) == 2
    assert sum(len(sample.categories) for sample in dataset) == 4  # the instances kept
    assert ("c", "no instance left to train or evaluate on") in dataset.skipped


def test_transform_is_applied_when_set(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco)
    assert dataset.transform is None
    dataset.transform = lambda image, masks: (image[:, ::-1].copy(), masks[:, :, ::-1].copy())
    assert torch.equal(dataset[0].gt_masks[0], torch.from_numpy(SQUARE_A[:, ::-1].copy()))


# --- filters ---------------------------------------------------------------------------------


def test_category_filter_keeps_only_the_named_categories_and_counts_the_rest(tiny_coco) -> None:
    dataset = _dataset(tiny_coco, categories=["blob"])
    assert [dataset[i].categories for i in range(len(dataset))] == [["blob"], ["blob"]]
    # squares 11, 22 and 31 (before its polygon is looked at); crowd 13 counts as crowd
    assert dataset.summary()["skipped_category"] == 3 and dataset.summary()["skipped_crowd"] == 1


def test_unknown_category_in_the_filter_is_an_error_listing_the_available_ones(tiny_coco) -> None:
    with pytest.raises(DatasetError, match=r"\['cat'\] not found; available: blob, square"):
        _dataset(tiny_coco, categories=["blob", "cat"])


def _set_supercategories(annotations: Path, supercategories: dict[str, object]) -> Path:
    """Give the file's categories these `supercategory` fields (a name left out has none)."""
    data = json.loads(annotations.read_text())
    for c in data["categories"]:
        if c["name"] in supercategories:
            c["supercategory"] = supercategories[c["name"]]
    annotations.write_text(json.dumps(data))
    return annotations


def test_group_by_supercategory_names_every_instance_by_its_supercategory(tiny_coco) -> None:
    _set_supercategories(tiny_coco, {"square": "shape", "blob": "shape"})
    assert _dataset(tiny_coco)[0].categories == ["square", "blob"]  # by default: categories
    dataset = _dataset(tiny_coco, group_by="supercategory")
    batch = collate([dataset[0], dataset[1]])
    assert batch.categories == ["shape"] * 4  # what metrics group by: one class, `iou/shape`


@pytest.mark.parametrize("missing", [None, ""], ids=["absent", "empty"])
def test_a_category_without_supercategory_is_a_class_of_its_own_with_one_warning(
    tiny_coco: Path, caplog: pytest.LogCaptureFixture, missing: str | None
) -> None:
    _set_supercategories(tiny_coco, {"square": "shape", **({"blob": ""} if missing == "" else {})})
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        dataset = _dataset(tiny_coco, group_by="supercategory")
    assert [dataset[i].categories for i in range(2)] == [["shape", "blob"], ["blob", "shape"]]
    warnings = [r.getMessage() for r in caplog.records if "supercategory" in r.getMessage()]
    assert len(warnings) == 1 and "1 category has no 'supercategory' (blob)" in warnings[0]


def test_the_category_filter_may_name_a_supercategory_or_a_category_when_grouping(
    tiny_coco: Path,
) -> None:
    _set_supercategories(tiny_coco, {"square": "shape", "blob": "shape"})
    everything = _dataset(tiny_coco, group_by="supercategory", categories=["shape"])
    assert sum(len(sample.categories) for sample in everything) == 4
    blobs = _dataset(tiny_coco, group_by="supercategory", categories=["blob"])
    assert [blobs[i].categories for i in range(2)] == [["shape"], ["shape"]]  # blobs only
    assert blobs.summary()["skipped_category"] == 3
    with pytest.raises(
        DatasetError, match=r"\['round'\] not found; available: blob, shape, square"
    ):
        _dataset(tiny_coco, group_by="supercategory", categories=["round"])


def test_group_by_accepts_category_or_supercategory_only(tmp_path: Path) -> None:
    match = r"dataset.group_by='super': must be one of category, supercategory"
    with pytest.raises(SamexpError, match=match):
        coco_splits("coco", str(_many(tmp_path, 4)), Pipeline(IMG_SIZE), group_by="super")


def test_min_area_skips_smaller_instances_and_counts_them(tiny_coco: Path) -> None:
    # areas: SQUARE_A 300, BLOB_A 250, SQUARE_B 100, BLOB_B ~470
    dataset = _dataset(tiny_coco, min_area=260)
    assert [dataset[i].categories for i in range(2)] == [["square"], ["blob"]]
    assert dataset.summary()["skipped_small"] == 2
    assert ("a", "annotation 12: area 250 px < min_area 260") in dataset.skipped


def test_an_image_left_without_instances_is_skipped_and_counted(tiny_coco: Path) -> None:
    dataset = _dataset(tiny_coco, categories=["square"], min_area=200)  # b keeps nothing
    assert dataset.names == ["a"]
    assert dataset.summary()["skipped_no_instances"] == 2


# --- layouts ---------------------------------------------------------------------------------


def _many(root: Path, count: int) -> Path:
    """A single-layout dataset of `count` images with one square each."""
    images = [_image_entry(i, f"img{i:02d}.png") for i in range(count)]
    anns = [_ann(100 + i, i, 1, [_rect_polygon(10, 20, 10, 20)]) for i in range(count)]
    _write(root, images, anns)
    return root


def _parts(splits) -> tuple[set[str], set[str]]:
    return set(splits.train.names), set(splits.test.names)


def test_one_file_holds_out_test_fraction_by_path_and_adding_images_moves_none(tmp_path) -> None:
    root = str(_many(tmp_path, 12))
    train, test = _parts(coco_splits("coco", root, Pipeline(IMG_SIZE), test_fraction=0.3))
    assert test and train and train.isdisjoint(test)
    assert train | test == {f"img{i:02d}" for i in range(12)}
    _many(tmp_path, 40)  # the same 12 files and 28 more
    grown_train, grown_test = _parts(
        coco_splits("coco", root, Pipeline(IMG_SIZE), test_fraction=0.3)
    )
    assert test <= grown_test and train <= grown_train


def test_one_file_without_a_test_fraction_holds_out_the_default_share_and_says_so(
    tmp_path, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="samexp.data.splits"):
        splits = coco_splits("coco", str(_many(tmp_path, 10)), Pipeline(IMG_SIZE))
    assert splits.held_out == 0.2 and len(splits.test) >= 1 and splits.val is None
    assert "has no test split: holding out 20%" in caplog.text


def test_a_held_out_test_split_counts_the_skips_of_its_own_images(tmp_path) -> None:
    images = [_image_entry(i, f"img{i:02d}.png") for i in range(8)]
    anns = [_ann(100 + i, i, 1, [_rect_polygon(10, 20, 10, 20)]) for i in range(6)]  # 6, 7 bare
    anns += [_ann(200 + i, i, 1, _uncompressed_rle(CROWD_A), iscrowd=1) for i in range(6)]
    _write(tmp_path, images, anns)
    splits = coco_splits("coco", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.5)
    summary = splits.summary()
    assert summary["train/loaded"] + summary["test/loaded"] == 6
    assert summary["train/skipped_no_instances"] + summary["test/skipped_no_instances"] == 2
    assert summary["test/skipped_crowd"] == summary["test/loaded"] >= 1


def test_one_file_with_a_single_usable_image_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"1 image\(s\) in all, too few to hold out a test"):
        coco_splits("coco", str(_many(tmp_path, 1)), Pipeline(IMG_SIZE))


def test_val_size_is_the_deprecated_name_of_test_fraction(tmp_path: Path, caplog) -> None:
    root = str(_many(tmp_path, 12))
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco"):
        old = coco_splits("coco", root, Pipeline(IMG_SIZE), val_size=0.3)
    assert "dataset.val_size is deprecated: it is dataset.test_fraction now" in caplog.text
    assert _parts(old) == _parts(coco_splits("coco", root, Pipeline(IMG_SIZE), test_fraction=0.3))


@pytest.mark.parametrize("key", ["test_fraction", "val_size"])
def test_a_held_out_share_outside_0_1_is_an_error_naming_the_key(tmp_path, key: str) -> None:
    with pytest.raises(SamexpError, match=rf"dataset.{key}=1.5: must be in \(0, 1\)"):
        coco_splits("coco", str(_many(tmp_path, 4)), Pipeline(IMG_SIZE), **{key: 1.5})


def test_pre_split_layout_is_detected_and_its_val_part_is_the_test_split(tmp_path: Path) -> None:
    _many(tmp_path / "train", 3)
    _many(tmp_path / "val", 2)
    _write_image(tmp_path / "images" / "decoy.png")  # single-layout files are ignored
    splits = coco_splits("coco", str(tmp_path), Pipeline(IMG_SIZE))
    assert (len(splits.train), len(splits.test), splits.val) == (3, 2, None)
    assert splits.test[0].image_path == str(tmp_path / "val" / "images" / "img00.png")
    assert splits.summary()["test/loaded"] == 2 and "train/skipped_crowd" in splits.summary()


def test_pre_split_train_and_val_with_test_split_null_keep_val_for_validation(tmp_path) -> None:
    _many(tmp_path / "train", 6)
    _many(tmp_path / "val", 2)
    splits = coco_splits(
        "coco", str(tmp_path), Pipeline(IMG_SIZE), test_split=None, test_fraction=0.3
    )
    assert len(splits.val) == 2 and len(splits.train) + len(splits.test) == 6


def test_a_pre_split_train_part_alone_gets_a_held_out_test_split(tmp_path) -> None:
    _many(tmp_path / "train", 6)
    splits = coco_splits("coco", str(tmp_path), Pipeline(IMG_SIZE), test_fraction=0.3)
    assert len(splits.train) + len(splits.test) == 6 and splits.val is None


def test_a_root_without_annotations_is_an_error_listing_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "notes.json").write_text('{"shapes": []}')
    with pytest.raises(DatasetError, match="no COCO annotations") as err:
        coco_splits("coco", str(tmp_path), Pipeline(IMG_SIZE))
    for said in ("folders here: photos", "JSON files: notes.json", "dataset.annotations="):
        assert said in str(err.value)


def test_colliding_stems_are_named_by_their_relative_path(tmp_path: Path) -> None:
    images = [
        _image_entry(1, "x/0001.png"),
        _image_entry(2, "y/0001.png"),
        _image_entry(3, "z.png"),
    ]
    anns = [_ann(i, i, 1, [_rect_polygon(10, 20, 10, 20)]) for i in (1, 2, 3)]
    assert _dataset(_write(tmp_path, images, anns)).names == ["x__0001.png", "y__0001.png", "z"]


# --- bad input -------------------------------------------------------------------------------


def test_missing_annotations_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="labels.json does not exist"):
        read_coco(tmp_path / "labels.json", tmp_path / "images")


def test_invalid_json_is_an_error_naming_the_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(
        DatasetError, match=r"annotations.json: not valid JSON \(Expecting value: line 2 column 18"
    ):
        read_coco(tmp_path / "annotations.json", tmp_path / "images")


@pytest.mark.parametrize("key", ["images", "annotations"])
def test_a_missing_top_level_list_is_an_error_naming_it(tmp_path: Path, key: str) -> None:
    data = {"images": [], "annotations": [], "categories": CATEGORIES}
    del data[key]
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"annotations.json: no '{key}' list"):
        read_coco(tmp_path / "annotations.json", tmp_path / "images")


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_an_entry_that_is_not_an_object_is_an_error_naming_it(tmp_path: Path, key: str) -> None:
    data = {"images": [], "annotations": [], "categories": CATEGORIES}
    data[key] = [*data[key], 7, [1, 2]]
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    at = len(data[key]) - 2
    with pytest.raises(DatasetError) as err:
        read_coco(tmp_path / "annotations.json", tmp_path / "images")
    assert str(err.value) == (
        f"{tmp_path / 'annotations.json'}: {key}[{at}] is int, not an object (2 such entries); "
        f"every entry of '{key}' is a JSON object"
    )


@pytest.mark.parametrize(
    "file_name", ["../../outside.png", "/tmp/outside.png", "a/../../../x.png", "..\\..\\x.png"]
)
def test_a_file_name_outside_the_dataset_is_an_error(tmp_path: Path, file_name: str) -> None:
    path = _write(tmp_path, [_image_entry(1, file_name)], [], write_images=False)
    with pytest.raises(DatasetError, match=f"file_name '{re.escape(file_name)}', which is outside"):
        read_coco(path, tmp_path / "images")


def test_an_annotation_of_an_unlisted_image_is_an_error_naming_the_annotation(tmp_path) -> None:
    path = _write(tmp_path, [_image_entry(1, "a.png")], [_ann(77, 9, 1, [[1, 1, 9, 1, 9, 9]])])
    with pytest.raises(DatasetError, match="annotation 77 refers to image id 9"):
        read_coco(path, tmp_path / "images")


def test_a_listed_image_without_its_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [_image_entry(1, "a.png")], [])
    _write(tmp_path, [_image_entry(1, "a.png"), _image_entry(2, "gone.png")], [],
           write_images=False)  # fmt: skip
    with pytest.raises(DatasetError, match="missing from .*images: gone.png"):
        read_coco(path, tmp_path / "images")


def test_a_polygon_with_fewer_than_3_points_is_skipped_with_a_warning(tiny_coco, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="samexp.data.coco_json"):
        dataset = _dataset(tiny_coco)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("31" in message and "c.png" in message for message in warnings)  # annotation, file
    assert dataset.summary()["skipped_bad_polygon"] == 1


@pytest.mark.parametrize(
    "second", [_image_entry(1, "b.png"), _image_entry(2, "a.png")], ids=["same id", "same file"]
)
def test_an_image_listed_twice_is_an_error(tmp_path: Path, second: dict) -> None:
    path = _write(tmp_path, [_image_entry(1, "a.png"), second], [])
    with pytest.raises(DatasetError, match=f"'{second['file_name']}'\\) is listed twice"):
        read_coco(path, tmp_path / "images")


def test_a_size_that_differs_from_the_file_is_an_error_naming_both(tmp_path: Path) -> None:
    path = _write(tmp_path, [_image_entry(1, "a.png")], [])
    _write(tmp_path, [_image_entry(1, "a.png", h=50, w=70)], [], write_images=False)
    with pytest.raises(DatasetError, match=r"images/a.png: .* says it is 70×50 .* image is 64×48"):
        read_coco(path, tmp_path / "images")


def test_an_rle_of_another_size_than_its_image_is_an_error(tmp_path: Path) -> None:
    rle = _compressed_rle(np.ones((10, 10), dtype=bool))
    path = _write(tmp_path, [_image_entry(1, "a.png")], [_ann(5, 1, 1, rle)])
    with pytest.raises(DatasetError, match=r"annotation 5 has an RLE of size \[10, 10\]"):
        read_coco(path, tmp_path / "images")


def test_a_box_only_annotation_among_masks_is_an_error_asking_for_masks(tmp_path) -> None:
    ann = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0}
    masked = _ann(6, 1, 1, [_rect_polygon(10, 20, 10, 20)])
    path = _write(tmp_path, [_image_entry(1, "a.png")], [masked, ann])
    with pytest.raises(DatasetError, match="annotation 5 has no usable 'segmentation'"):
        read_coco(path, tmp_path / "images")


# --- EXIF orientation ------------------------------------------------------------------------


def _save_rotated_jpeg(path: Path, displayed: np.ndarray) -> None:
    """Store `displayed` turned back 90°, with EXIF orientation 6 (viewers rotate it upright)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(displayed, 1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)


def test_an_exif_rotated_jpeg_is_turned_to_the_annotated_frame(tmp_path: Path) -> None:
    displayed = np.full((W, H, 3), 20, dtype=np.uint8)  # 64 tall, 48 wide once rotated upright
    displayed[5:20, 10:40] = 230  # the annotated object, in displayed coordinates
    _save_rotated_jpeg(tmp_path / "images" / "phone.jpg", displayed)
    with Image.open(tmp_path / "images" / "phone.jpg") as stored:
        assert stored.size == (W, H)  # the file holds 64 wide × 48 tall
    anns = [_ann(1, 1, 1, [_rect_polygon(5, 20, 10, 40)])]
    path = _write(tmp_path, [_image_entry(1, "phone.jpg", h=W, w=H)], anns, write_images=False)
    sample = _dataset(path)[0]
    assert sample.original_size == (W, H)
    assert sample.gt_masks[0].sum() == 15 * 30
    h, w = sample.input_size
    image, mask = sample.image[:, :h, :w].float().mean(0), sample.masks[0, :h, :w]
    assert image[mask].mean() > 200 and image[~mask].mean() < 50  # the mask lies on the object


def test_a_json_sized_as_stored_keeps_the_pixels_as_stored(tmp_path: Path) -> None:
    """A tool that ignored EXIF annotated the stored pixels; turning them would misalign masks."""
    displayed = np.zeros((W, H, 3), dtype=np.uint8)
    _save_rotated_jpeg(tmp_path / "images" / "phone.jpg", displayed)
    anns = [_ann(1, 1, 1, [_rect_polygon(5, 20, 10, 40)])]
    path = _write(tmp_path, [_image_entry(1, "phone.jpg", h=H, w=W)], anns, write_images=False)
    assert _dataset(path)[0].original_size == (H, W)


def test_a_size_mismatch_on_a_rotated_photo_names_both_frames(tmp_path: Path) -> None:
    _save_rotated_jpeg(tmp_path / "images" / "phone.jpg", np.zeros((W, H, 3), dtype=np.uint8))
    path = _write(tmp_path, [_image_entry(1, "phone.jpg", h=40, w=40)], [], write_images=False)
    with pytest.raises(
        DatasetError, match=r"image is 64×48 \(48×64 as displayed, EXIF orientation 6\)"
    ):
        read_coco(path, tmp_path / "images")


# --- end to end ------------------------------------------------------------------------------


def _shapes_coco(root: Path, count: int = 6) -> Path:
    """Bright squares and blobs on dark noise, one of each per image: learnable, 2 categories."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(count):
        pixels = rng.integers(0, 50, (96, 128, 3), dtype=np.uint8)
        y, x = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        pixels[y : y + 30, x : x + 30] = (230, 230, 60)
        blob = np.zeros((96, 128), dtype=np.uint8)
        cv2.circle(blob, (int(rng.integers(85, 110)), int(rng.integers(25, 70))), 15, 1, -1)
        pixels[blob > 0] = (60, 220, 230)
        (root / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), pixels[:, :, ::-1])
        images.append(_image_entry(i, f"s{i}.png", 96, 128))
        anns.append(_ann(2 * i, i, 1, [[x, y, x + 30, y, x + 30, y + 30, x, y + 30]]))
        anns.append(_ann(2 * i + 1, i, 2, _compressed_rle(blob.astype(bool))))
    data = {"images": images, "annotations": anns, "categories": CATEGORIES}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


@pytest.mark.slow
def test_run_on_a_coco_dataset_reports_test_iou_per_category(tmp_path, make_config) -> None:
    from samexp.runner import run

    root = _shapes_coco(tmp_path / "coco")
    metrics = run(make_config(
        "dataset=coco", f"dataset.root={root}", "dataset.test_fraction=0.34", "model=tiny",
        "adapter=decoder", "trainer.epochs=1", "trainer.max_steps=2", "trainer.batch_size=2",
    )).metrics  # fmt: skip
    for key in ("final/test/iou", "final/test/iou/square", "final/test/iou/blob"):
        assert 0.0 <= metrics[key] <= 1.0, key


def test_a_coco_dataset_follows_the_dataset_contract(tiny_coco: Path) -> None:
    assert isinstance(_dataset(tiny_coco), SampleDataset)
