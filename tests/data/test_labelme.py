"""Specifications for the LabelMe format, on tiny LabelMe JSONs written into tmp_path."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samexp.config.errors import DatasetError
from samexp.data.base import collate
from samexp.data.frame import Pipeline
from samexp.data.labelme import labelme_splits
from samexp.data.splits import DatasetSplits
from samexp.data.views import SampleDataset
from tests.conftest import IMG_SIZE

# pycocotools' decode trips numpy 2's copy-keyword deprecation inside its Cython code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 48, 64


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)


def _shape(label: str, points: list, shape_type: str = "polygon", group_id=None, **extra) -> dict:
    return {"label": label, "points": points, "shape_type": shape_type, "group_id": group_id,
            "flags": {}, **extra}  # fmt: skip


def _square(label: str, y0: int, x0: int, side: int = 10, group_id=None) -> dict:
    """A polygon whose LabelMe rasterisation (outline included) is rows y0..y0+side inclusive."""
    x1, y1 = x0 + side, y0 + side
    return _shape(label, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], group_id=group_id)


def _write(folder: Path, name: str, shapes: list, image: bool = True, h: int = H, w: int = W,
           image_path: str | None = None, **extra) -> Path:  # fmt: skip
    """`<folder>/<name>.json` as LabelMe saves it and (unless told not to) `<name>.png` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        Image.fromarray(_pixels(h, w)).save(folder / f"{name}.png")
    data = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imageData": None,
            "imagePath": image_path or f"{name}.png", "imageHeight": h, "imageWidth": w, **extra}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(data))
    return folder / f"{name}.json"


def _splits(root: Path, **options) -> DatasetSplits:
    return labelme_splits(str(root), Pipeline(IMG_SIZE), "lm", **options)


def _minimal(root: Path) -> None:
    """A test split with one usable image, so a test can focus on train."""
    _write(root / "test", "t0", [_square("cat", 5, 5)])


# --- shapes -----------------------------------------------------------------------------------


def test_polygon_rectangle_circle_and_mask_shapes_become_filled_masks(tmp_path: Path) -> None:
    patch = np.zeros((4, 5), dtype=np.uint8)
    patch[1:3, :] = 1  # rows 31-32 of the image, columns 2-6
    shapes = [
        _square("poly", 5, 10),
        _shape("rect", [[40, 15], [30, 5]], "rectangle"),  # corners in either order
        _shape("disc", [[50, 30], [50, 35]], "circle"),  # centre, then a point on the circle
        _shape(
            "blob", [[2, 30], [6, 33]], "mask", mask=base64.b64encode(_png_bytes(patch)).decode()
        ),
    ]
    _write(tmp_path / "train", "a", shapes)
    _minimal(tmp_path)
    sample = _splits(tmp_path).train[0]
    masks = dict(zip(sample.categories, sample.gt_masks.numpy(), strict=True))
    expected = np.zeros((H, W), dtype=bool)
    expected[5:16, 10:21] = True
    assert (masks["poly"] == expected).all()
    expected[:] = False
    expected[5:16, 30:41] = True
    assert (masks["rect"] == expected).all()
    ys, xs = np.nonzero(masks["disc"])
    assert masks["disc"][30, 50] and (ys.min(), ys.max(), xs.min(), xs.max()) == (25, 35, 45, 55)
    assert abs(masks["disc"].sum() - np.pi * 25) < 25  # a disc, not its bounding box (121 px)
    expected[:] = False
    expected[31:33, 2:7] = True
    assert (masks["blob"] == expected).all()


def test_each_image_is_one_sample_carrying_all_its_instances_named_by_label(tmp_path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _square("dog", 20, 30)])
    _write(tmp_path / "train", "b", [_square("cat", 10, 10)])
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert train.names == ["a", "b"]
    assert train[0].categories == ["cat", "dog"] and train[0].masks.shape[0] == 2
    assert train.class_names == ["cat", "dog"]


def test_shapes_sharing_a_group_id_and_a_label_are_one_instance(tmp_path: Path) -> None:
    shapes = [_square("car", 5, 5, group_id=1), _square("car", 5, 30, group_id=1),
              _square("person", 25, 5, group_id=1), _square("car", 25, 30)]  # fmt: skip
    _write(tmp_path / "train", "a", shapes)
    _minimal(tmp_path)
    sample = _splits(tmp_path).train[0]
    assert sorted(sample.categories) == ["car", "car", "person"]
    areas = sorted(int(m.sum()) for m in sample.gt_masks)
    assert areas == [121, 121, 242]  # the two occluded halves of car 1 are one mask


def test_lines_points_and_linestrips_have_no_area_and_are_skipped_and_counted(tmp_path) -> None:
    shapes = [_square("cat", 5, 5), _shape("edge", [[1, 1], [9, 9]], "line"),
              _shape("tip", [[3, 3]], "point"), _shape("path", [[1, 1], [5, 1], [5, 5]], "linestrip")]  # fmt: skip
    _write(tmp_path / "train", "a", shapes)
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert train[0].categories == ["cat"]
    assert train.summary()["skipped_no_area"] == 3


def test_a_polygon_with_fewer_than_3_points_is_skipped_and_counted(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _shape("cat", [[1, 1], [9, 9]])])
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert len(train[0].categories) == 1 and train.summary()["skipped_bad_polygon"] == 1


def test_a_shape_without_shape_type_is_a_polygon_as_in_old_labelme_files(tmp_path) -> None:
    old = {"label": "cat", "points": [[5, 5], [15, 5], [15, 15], [5, 15]]}
    _write(tmp_path / "train", "a", [old])
    _minimal(tmp_path)
    assert _splits(tmp_path).train[0].gt_masks[0].sum() == 121


def test_an_unknown_shape_type_is_refused_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_shape("cat", [[1, 1], [5, 5]], "cuboid")])
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"a\.json: shape 0 has shape_type 'cuboid'"):
        _splits(tmp_path)


def test_min_area_skips_smaller_instances_and_counts_them(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _square("cat", 20, 20, side=2)])
    _minimal(tmp_path)
    train = _splits(tmp_path, min_area=50).train
    assert len(train[0].categories) == 1 and train.summary()["skipped_small"] == 1


# --- categories -------------------------------------------------------------------------------


def test_categories_keep_only_the_named_labels_and_count_the_rest(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _square("dog", 20, 30)])
    _write(tmp_path / "train", "b", [_square("dog", 5, 5)])
    _minimal(tmp_path)
    train = _splits(tmp_path, categories=["cat"]).train
    assert train.names == ["a"] and train[0].categories == ["cat"]
    summary = train.summary()
    assert summary["skipped_category"] == 2 and summary["skipped_no_instances"] == 1


def test_a_kept_label_absent_from_one_split_is_accepted(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _square("dog", 20, 30)])
    _minimal(tmp_path)  # test holds cats only
    splits = _splits(tmp_path, categories=["cat", "dog"])
    assert splits.train[0].categories == ["cat", "dog"] and splits.test[0].categories == ["cat"]


def test_an_unknown_label_in_categories_is_refused_listing_the_labels(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)])
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"\['cow'\] label no shape; labels found: cat"):
        _splits(tmp_path, categories=["cow"])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("image_path", ["../../outside.png", "/etc/outside.png", "..\\..\\x.png"])
def test_an_image_path_escaping_the_root_is_refused(tmp_path: Path, image_path: str) -> None:
    root = tmp_path / "lm"
    _write(root / "train", "a", [_square("cat", 5, 5)], image_path=image_path)
    _minimal(root)
    with pytest.raises(DatasetError, match=r"a\.json: imagePath .* is outside the dataset root"):
        _splits(root)


def test_an_image_path_into_a_sibling_folder_of_the_root_is_followed(tmp_path: Path) -> None:
    """LabelMe writes `..\\images\\a.png` (Windows) when the JSONs are kept apart from images."""
    Image.fromarray(_pixels()).save(tmp_path / "a.png")
    (tmp_path / "images").mkdir()
    (tmp_path / "a.png").rename(tmp_path / "images" / "a.png")
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)], image=False,
           image_path="..\\images\\a.png")  # fmt: skip
    _minimal(tmp_path)
    sample = _splits(tmp_path).train[0]
    assert sample.image_path == str(tmp_path / "images" / "a.png")


def test_a_size_disagreeing_with_the_image_is_refused_naming_both_sizes(tmp_path: Path) -> None:
    path = _write(tmp_path / "train", "a", [_square("cat", 5, 5)])
    data = json.loads(path.read_text())
    data["imageWidth"] = 100
    path.write_text(json.dumps(data))
    _minimal(tmp_path)
    with pytest.raises(
        DatasetError, match=r"a\.json says it is 100×48 \(W×H\) but the image is 64×48"
    ):
        _splits(tmp_path)


def _save_rotated_jpeg(path: Path, displayed: np.ndarray) -> None:
    """Store `displayed` turned back 90°, with EXIF orientation 6 (viewers rotate it upright)."""
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(displayed, 1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)


def test_an_exif_rotated_photo_is_annotated_as_displayed(tmp_path: Path) -> None:
    displayed = np.full((W, H, 3), 20, dtype=np.uint8)  # 64 tall, 48 wide once upright
    displayed[5:16, 10:31] = 230
    (tmp_path / "train").mkdir()
    _save_rotated_jpeg(tmp_path / "train" / "phone.jpg", displayed)
    rect = _shape("obj", [[10, 5], [30, 15]], "rectangle")
    _write(tmp_path / "train", "phone", [rect], image=False, h=W, w=H, image_path="phone.jpg")
    _minimal(tmp_path)
    sample = _splits(tmp_path).train[0]
    assert sample.original_size == (W, H)
    h, w = sample.input_size
    image, mask = sample.image[:, :h, :w].float().mean(0), sample.masks[0, :h, :w]
    assert image[mask].mean() > 200 and image[~mask].mean() < 50


def test_a_rotated_photo_of_neither_size_is_refused_naming_both_frames(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    _save_rotated_jpeg(tmp_path / "train" / "phone.jpg", np.zeros((W, H, 3), dtype=np.uint8))
    _write(tmp_path / "train", "phone", [], image=False, h=40, w=40, image_path="phone.jpg")
    _minimal(tmp_path)
    with pytest.raises(
        DatasetError, match=r"image is 64×48 \(48×64 as displayed, EXIF orientation 6\)"
    ):
        _splits(tmp_path)


@pytest.mark.parametrize(
    "content",
    ['{"images": [], "annotations": [], "categories": []}', "[1, 2]", '{"shapes": [}'],
    ids=["coco", "list", "invalid"],
)
def test_a_json_that_is_not_labelmes_is_refused_naming_the_file(tmp_path, content) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "other.json").write_text(content)
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"other\.json: not (a LabelMe file|valid JSON)"):
        _splits(tmp_path)


def test_an_image_without_a_json_has_no_instances_and_is_skipped_and_counted(tmp_path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)])
    Image.fromarray(_pixels()).save(tmp_path / "train" / "unlabelled.jpg")
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert train.names == ["a"] and train.summary()["skipped_no_json"] == 1


def test_a_missing_image_is_read_from_the_embedded_image_data(tmp_path: Path) -> None:
    pixels = _pixels()
    embedded = base64.b64encode(_png_bytes(pixels)).decode()
    path = _write(tmp_path / "train", "a", [_square("cat", 5, 5)], image=False, imageData=embedded)
    _minimal(tmp_path)
    sample = _splits(tmp_path).train[0]
    assert sample.image_path == str(path) and sample.original_size == (H, W)
    h, w = sample.input_size
    assert h == IMG_SIZE * H // W and w == IMG_SIZE


def test_an_embedded_image_of_another_size_than_stated_is_refused(tmp_path: Path) -> None:
    embedded = base64.b64encode(_png_bytes(_pixels(10, 10))).decode()
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)], image=False, imageData=embedded)
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"says it is 64×48 \(W×H\) but the image is 10×10"):
        _splits(tmp_path)


@pytest.mark.parametrize("data", ["not base64!", base64.b64encode(b"<svg/>").decode()])
def test_embedded_image_data_that_is_not_an_image_is_refused_naming_the_file(tmp_path, data):
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)], image=False, imageData=data)
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"a\.json: imageData is not a readable image"):
        _splits(tmp_path)


def test_a_missing_image_without_image_data_is_refused_or_skipped_when_asked(tmp_path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)])
    _write(tmp_path / "train", "gone", [_square("cat", 5, 5)], image=False)
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"gone\.json: its image .*gone\.png does not exist"):
        _splits(tmp_path)
    train = _splits(tmp_path, missing_images="skip").train
    assert train.names == ["a"] and train.summary()["skipped_missing_image"] == 1


# --- splits -----------------------------------------------------------------------------------


def test_the_datasets_own_val_split_is_used_and_limit_is_passed_on(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / "train", f"a{i}", [_square("cat", 5, 5)])
    _write(tmp_path / "val", "v0", [_square("cat", 5, 5)])
    _minimal(tmp_path)
    splits = _splits(tmp_path, limit=2)
    assert splits.val.names == ["v0"] and splits.test.names == ["t0"] and splits.limit == 2
    assert len(splits.carve_val(0.5, seed=0).train) == 2


def test_without_a_val_folder_there_is_no_val_split_to_carve_from(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5)])
    _minimal(tmp_path)
    assert _splits(tmp_path).val is None


def test_a_missing_train_folder_is_refused_naming_the_folders_and_the_fix(tmp_path) -> None:
    _write(tmp_path / "images", "a", [_square("cat", 5, 5)])
    _write(tmp_path, "b", [_square("cat", 5, 5)])
    with pytest.raises(
        DatasetError,
        match=r"no LabelMe train folder \(train/, training/\); folders there: images, and 1 JSON "
        r"file\(s\) in the root itself; set dataset.train_split=<folder>, or dataset.train_split=\.",
    ):
        _splits(tmp_path)


def test_summary_counts_loaded_images_and_every_skip(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _shape("e", [[1, 1], [2, 2]], "line")])
    _write(tmp_path / "train", "empty", [])
    _minimal(tmp_path)
    assert _splits(tmp_path).train.summary() == {
        "loaded": 1, "skipped_category": 0, "skipped_ignored_shape": 0, "skipped_bad_polygon": 0,
        "skipped_no_area": 1,
        "skipped_small": 0, "skipped_no_instances": 1, "skipped_no_json": 0,
        "skipped_missing_image": 0, "clipped_outside": 0,
    }  # fmt: skip


def test_a_labelme_dataset_follows_the_dataset_contract(tmp_path: Path) -> None:
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), _square("dog", 20, 30)])
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert isinstance(train, SampleDataset)
    batch = collate([train[0]])
    assert batch.categories == ["cat", "dog"] and batch.images.shape == (1, 3, IMG_SIZE, IMG_SIZE)


def test_a_mask_shape_whose_box_leaves_the_image_is_refused_naming_the_shape(tmp_path) -> None:
    png = base64.b64encode(_png_bytes(np.ones((4, 4), dtype=np.uint8))).decode()
    _write(tmp_path / "train", "a", [_shape("blob", [[62, 2], [65, 5]], "mask", mask=png)])
    _minimal(tmp_path)
    with pytest.raises(DatasetError, match=r"a\.json: shape 0: not a LabelMe mask .*leaves the"):
        _splits(tmp_path)


# --- layouts ----------------------------------------------------------------------------------

CAT = [_square("cat", 5, 5)]
HELD_OUT = "held out"  # the test split is held out of train; then the val names expected
LAYOUTS = {
    "split-folders": (["train/a", "val/v", "test/t"], {}, (["a"], ["v"], ["t"])),
    "aliases": (["training/a", "validation/v", "testing/t"], {}, (["a"], ["v"], ["t"])),
    "dev-as-val": (["train/a", "dev/v", "test/t"], {}, (["a"], ["v"], ["t"])),
    "train-and-valid-evaluates-valid": (["train/a", "valid/v"], {}, (["a"], None, ["v"])),
    "test-split-named-valid": (["train/a", "valid/v"], {"test_split": "valid"}, (["a"], None, ["v"])),
    "flat-root": (["a", "b", "c", "d", "e"], {"train_split": ".", "test_split": None}, (HELD_OUT, None)),
    "train-only": (["train/a", "train/b", "train/c"], {}, (HELD_OUT, None)),
    "test-split-null": (["train/a", "train/b", "val/v", "test/t"], {"test_split": None}, (HELD_OUT, ["v"])),
}  # fmt: skip


@pytest.mark.parametrize(("files", "options", "expected"), LAYOUTS.values(), ids=LAYOUTS.keys())
def test_each_layout_loads_and_a_missing_test_split_is_held_out_of_train(
    tmp_path, files, options, expected
) -> None:
    for file in files:
        folder, _, stem = file.rpartition("/")
        _write(tmp_path / folder, stem, CAT)
    splits = labelme_splits(root=str(tmp_path), pipeline=Pipeline(IMG_SIZE), **options)
    parts = (splits.train, splits.val, splits.test)
    names = tuple(sorted(p.names) if p is not None else None for p in parts)
    if expected[0] != HELD_OUT:
        assert names == expected and splits.held_out is None
        return
    trained = [f.rpartition("/")[2] for f in files if f.split("/")[0] in ("train", f)]
    assert splits.held_out == 0.2 and names[2] and sorted(names[0] + names[2]) == trained
    assert names[1] == expected[1]


def test_a_run_is_named_after_the_root_folder_unless_named(tmp_path: Path) -> None:
    root = tmp_path / "bottles"
    for i in range(2):
        _write(root, f"a{i}", CAT)
    assert labelme_splits(str(root), Pipeline(IMG_SIZE), train_split=".").name == "bottles"
    assert labelme_splits(str(root), Pipeline(IMG_SIZE), "mine", train_split=".").name == "mine"


# --- __ignore__ and imageData -------------------------------------------------------------------


def test_ignore_shapes_are_no_instance_but_skipped_and_counted_as_labelme2coco_does(
    tmp_path,
) -> None:
    ignore = [_square("__ignore__", 20, 30), _shape("__ignore__", [[0, 0], [3, 3]], "rectangle")]
    _write(tmp_path / "train", "a", [_square("cat", 5, 5), *ignore])
    _write(tmp_path / "train", "only_ignored", ignore[:1])
    _minimal(tmp_path)
    train = _splits(tmp_path).train
    assert train.names == ["a"] and train[0].categories == ["cat"]
    assert train.class_names == ["cat"]
    summary = train.summary()
    assert summary["skipped_ignored_shape"] == 3 and summary["skipped_no_instances"] == 1


IMAGE_SOURCES = {
    "file-beside": (True, False),
    "file-beside-and-embedded": (True, True),
    "embedded-only": (False, True),
}


@pytest.mark.parametrize(("beside", "embedded"), IMAGE_SOURCES.values(), ids=IMAGE_SOURCES.keys())
def test_the_image_is_read_from_its_file_else_from_image_data(tmp_path, beside, embedded) -> None:
    data = base64.b64encode(_png_bytes(_pixels())).decode() if embedded else None
    path = _write(tmp_path / "train", "a", CAT, image=beside, imageData=data)
    _minimal(tmp_path)
    splits = _splits(tmp_path)
    sample, same_pixels = splits.train[0], splits.test[0]  # t0.png holds the same _pixels()
    assert sample.image_path == str(path.with_suffix(".png") if beside else path)
    assert torch.equal(sample.image, same_pixels.image)
