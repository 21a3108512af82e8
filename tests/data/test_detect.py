"""Layout detection as a table: each case writes a tiny tree (8×8 files, headers only where the
rule reads them) and states the reading `detect` must give, as the override line a user would pin,
or the refusal it must say."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samexp.config.errors import DatasetError
from samexp.data.detect import candidates, detect
from samexp.data.detect.reading import value_text
from samexp.data.split_folders import split_of

SIDE = 8


def _mask(values: tuple[int, ...]) -> np.ndarray:
    """An 8×8 mask holding `values` in horizontal bands."""
    out = np.zeros((SIDE, SIDE), np.uint8)
    for i, v in enumerate(values):
        out[i * SIDE // len(values) : (i + 1) * SIDE // len(values)] = v
    return out


def _write(root: Path, tree: dict[str, object]) -> Path:
    """Files by relative path: 'img' (a photo), a tuple of mask values, text, or a dict (JSON)."""
    for rel, content in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "img":
            cv2.imwrite(str(path), np.full((SIDE, SIDE, 3), 90, np.uint8))
        elif isinstance(content, tuple):  # PIL: cv2 cannot write the GIF masks DRIVE has
            Image.fromarray(_mask(content)).save(path)
        elif isinstance(content, dict):
            path.write_text(json.dumps(content))
        else:
            path.write_text(str(content))
    return root


def _pairs(images: str, masks: str, names: list[str], values=(0, 255), mask_ext=".png",
           image_ext=".png", mask_name: str = "{}") -> dict[str, object]:  # fmt: skip
    tree: dict[str, object] = {}
    for name in names:
        tree[f"{images}/{name}{image_ext}"] = "img"
        tree[f"{masks}/{mask_name.format(name)}{mask_ext}"] = values
    return tree


def _splits(template: str, masks_template: str, **parts: list[str]) -> dict[str, object]:
    tree: dict[str, object] = {}
    for split, names in parts.items():
        tree |= _pairs(template.format(split=split), masks_template.format(split=split), names)
    return tree


LABELME = {"version": "5.2.1", "flags": {}, "shapes": [{"label": "cat", "points": [[1, 1], [6, 1],
           [6, 6]], "shape_type": "polygon"}], "imagePath": "a.png", "imageData": None,
           "imageHeight": SIDE, "imageWidth": SIDE}  # fmt: skip
COCO = {"images": [{"id": 1, "file_name": "a.png", "height": SIDE, "width": SIDE}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 6]],
                         "area": 12, "bbox": [1, 1, 5, 5], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "cat"}]}  # fmt: skip
SEG_LINE = "0 0.1 0.1 0.8 0.1 0.8 0.8\n"

CASES = {
    "split folders holding images/ and masks/": (
        _splits("{split}/images", "{split}/masks", train=["a", "b"], test=["c"]),
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.train_split=train dataset.test_split=test",
    ),
    "images/<split> and masks/<split>, valid as the only other split": (
        _splits("images/{split}", "masks/{split}", train=["a", "b"], valid=["c"]),
        "dataset=folder dataset.root=ROOT 'dataset.images_dir=\"images/{split}\"' "
        "'dataset.masks_dir=\"masks/{split}\"' dataset.train_split=train dataset.test_split=valid",
    ),
    "no split at all: the test split is held out": (
        _pairs("images", "masks", ["a", "b", "c"]),
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.train_split=. dataset.test_split=null",
    ),
    "masks of 0 and 1 are binary with mask_threshold=0": (
        _pairs("images", "masks", ["a", "b"], values=(0, 1)),
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.mask_threshold=0 dataset.train_split=. dataset.test_split=null",
    ),
    "masks beside their images with a suffix": (
        _pairs("train", "train", ["a", "b"], mask_name="{}_mask", image_ext=".jpg")
        | _pairs("test", "test", ["c"], mask_name="{}_mask", image_ext=".jpg"),
        "dataset=folder dataset.root=ROOT dataset.images_dir=. dataset.masks_dir=. "
        "dataset.mask_suffix=_mask dataset.train_split=train dataset.test_split=test",
    ),
    "DRIVE: the vessels folder, not the field-of-view mask/": (
        {
            **{f"{s}/images/{n}_{s}.tif": "img" for s, n in (("training", 21), ("test", 1))},
            **{
                f"{s}/1st_manual/{n}_manual1.gif": (0, 255)
                for s, n in (("training", 21), ("test", 1))
            },
            **{f"{s}/mask/{n}_{s}_mask.gif": (255,) for s, n in (("training", 21), ("test", 1))},
        },
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=1st_manual "
        "dataset.mask_suffix=_manual1 'dataset.image_suffix=\"_{split}\"' "
        "dataset.train_split=training dataset.test_split=test",
    ),
    "class ids without a class list are a label map named by ids": (
        _pairs("images", "labels", ["a", "b"], values=(0, 1, 2)),
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=images dataset.labels_dir=labels "
        "dataset.train_split=. dataset.test_split=null",
    ),
    "a class list makes masks a label map": (
        _pairs("images", "masks", ["a", "b"], values=(0, 1)) | {"classes.txt": "0 bg\n1 cell\n"},
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=images dataset.labels_dir=masks "
        "dataset.classes_file=classes.txt dataset.train_split=. dataset.test_split=null",
    ),
    "CamVid: train/ beside trainannot/": (
        _splits("{split}", "{split}annot", train=["a", "b"], val=["c"], test=["d"]),
        "dataset=folder dataset.root=ROOT 'dataset.images_dir=\"{split}\"' "
        "'dataset.masks_dir=\"{split}annot\"' dataset.train_split=train dataset.test_split=test "
        "dataset.val_split=val",
    ),
    "VOC: split lists under ImageSets/Segmentation": (
        _pairs("JPEGImages", "SegmentationClass", ["a", "b", "c"], values=(0, 1, 2))
        | {
            "JPEGImages/extra.png": "img",
            "ImageSets/Segmentation/train.txt": "a\nb\n",
            "ImageSets/Segmentation/val.txt": "c\n",
        },  # fmt: skip
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=JPEGImages "
        "dataset.labels_dir=SegmentationClass dataset.train_split=train dataset.test_split=val "
        "'dataset.split_files=\"ImageSets/Segmentation/{split}.txt\"'",
    ),
    "Roboflow COCO: _annotations.coco.json per split": (
        {f"{s}/_annotations.coco.json": COCO for s in ("train", "valid", "test")}
        | {f"{s}/a.png": "img" for s in ("train", "valid", "test")},
        "dataset=coco dataset.root=ROOT "
        "'dataset.annotations=\"{split}/_annotations.coco.json\"' 'dataset.images_dir=\"{split}\"' "
        "dataset.train_split=train dataset.test_split=test dataset.val_split=valid",
    ),
    "CVAT COCO: one instances file and images/": (
        {"annotations/instances_default.json": COCO, "images/a.png": "img"},
        "dataset=coco dataset.root=ROOT dataset.annotations=annotations/instances_default.json "
        "dataset.images_dir=images dataset.train_split=. dataset.test_split=null",
    ),
    "YOLO: data.yaml, images/<split> and labels/<split>": (
        {
            "data.yaml": "names: [cat]\n",
            "images/train/a.png": "img",
            "labels/train/a.txt": SEG_LINE,
            "images/val/b.png": "img",
            "labels/val/b.txt": SEG_LINE,
        },  # fmt: skip
        "dataset=yolo dataset.root=ROOT dataset.data_yaml=data.yaml "
        "'dataset.images_dir=\"images/{split}\"' dataset.train_split=train dataset.test_split=val",
    ),
    "YOLO without a data.yaml nor splits": (
        {"images/a.png": "img", "labels/a.txt": SEG_LINE},
        "dataset=yolo dataset.root=ROOT dataset.data_yaml=null dataset.images_dir=images "
        "dataset.train_split=. dataset.test_split=null",
    ),
    "LabelMe JSONs beside their images, flat": (
        {"a.png": "img", "a.json": LABELME},
        "dataset=labelme dataset.root=ROOT dataset.train_split=. dataset.test_split=null",
    ),
    "an archive's single top folder is looked into": (
        {
            "export/train/images/a.png": "img",
            "export/train/masks/a.png": (0, 255),
            "export/test/images/b.png": "img",
            "export/test/masks/b.png": (0, 255),
        },  # fmt: skip
        "dataset=folder dataset.root=ROOT/export dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.train_split=train dataset.test_split=test",
    ),
}


@pytest.mark.parametrize("tree, line", CASES.values(), ids=CASES.keys())
def test_a_layout_reads_as_the_overrides_that_load_it(tree, line, tmp_path):
    root = _write(tmp_path / "data", tree)
    assert detect(root).line() == line.replace("ROOT", str(root))


REFUSALS = {
    "two formats: each listed with the prefer override that picks it": (
        {
            "a.png": "img",
            "a.json": LABELME,
            "dataset.json": COCO
            | {"images": [{"id": 1, "file_name": "a.png", "height": SIDE, "width": SIDE}]},
        },  # fmt: skip
        r"can be read 2 ways.*\(1\) coco: .*dataset=auto dataset.prefer=coco, or dataset=coco "
        r".*\(2\) labelme: .*dataset.prefer=labelme, or dataset=labelme",
    ),
    "two CVAT files that are not splits: neither is ignored": (
        {
            "annotations/instances_default.json": COCO,
            "annotations/instances_other.json": COCO,
            "images/a.png": "img",
        },  # fmt: skip
        r"can be read 2 ways.*instances_default.json.*instances_other.json",
    ),
    "a YOLO detection export (boxes) names the cause": (
        {"images/a.png": "img", "labels/a.txt": "0 0.5 0.5 0.2 0.2\n"},
        r"hold boxes \(5 numbers per line.*YOLO detection export; export the segmentation",
    ),
    "nothing recognised: what the folder holds and the explicit forms": (
        {"notes/readme.txt": "hi", "photos/a.png": "img"},
        r"no dataset layout recognised in .*: it holds notes/, photos/; .*dataset=folder\|labelmap",
    ),
}


@pytest.mark.parametrize("tree, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_folder_that_reads_as_none_or_several_is_refused_naming_why(tree, message, tmp_path):
    root = _write(tmp_path / "data", tree)
    with pytest.raises(DatasetError, match=message):
        detect(root)


def test_prefer_picks_one_of_two_formats(tmp_path):
    root = _write(tmp_path / "data", REFUSALS["two formats: each listed with the prefer override "
                                               "that picks it"][0])  # fmt: skip
    assert detect(root, prefer="labelme").format == "labelme"
    with pytest.raises(DatasetError, match="dataset.prefer=yolo: .* does not read as yolo"):
        detect(root, prefer="yolo")


def test_a_symlink_is_not_followed_out_of_the_root(tmp_path):
    outside = _write(tmp_path / "elsewhere", _pairs("images", "masks", ["a", "b"]))
    root = tmp_path / "data"
    root.mkdir()
    os.symlink(outside / "images", root / "images")
    os.symlink(outside / "masks", root / "masks")
    assert candidates(root) == []
    (root / "images").unlink()
    (root / "masks").unlink()
    for name in ("images", "masks"):  # linked files too: only folders of real files are read
        (root / name).mkdir()
        os.symlink(outside / name / "a.png", root / name / "a.png")
    assert candidates(root) == []


def test_only_a_sample_of_masks_is_decoded(tmp_path, monkeypatch):
    from samexp.data.detect import values

    root = _write(tmp_path / "data", _pairs("images", "masks", [f"{i:03d}" for i in range(30)]))
    read = []
    monkeypatch.setattr(values, "_add", lambda out, path: read.append(path))
    detect(root)
    assert len(read) == values.SAMPLE < 30


@pytest.mark.parametrize("value, text", [(None, "null"), ("images", "images"), (0, "0"),
                                         ("images/{split}", '"images/{split}"'),
                                         ("my data", '"my data"')])  # fmt: skip
def test_override_values_are_written_as_hydra_reads_them(value, text):
    assert value_text(value) == text


def test_every_reading_says_why(tmp_path):
    root = _write(tmp_path / "data", CASES["CamVid: train/ beside trainannot/"][0])
    reading = detect(root)
    assert re.search(r"\d+ image/mask pairs by name", reading.why[0])
    assert "in 4 of 4 masks" in reading.why[1]


@pytest.mark.parametrize("values, format_, said", [((0, 255), "folder", False),
                                                   ((0, 1, 2), "labelmap", True)])  # fmt: skip
def test_the_image_suffix_note_is_said_of_label_map_readings_only(values, format_, said, tmp_path):
    """The folder format cuts DRIVE's `_training` off image names (image_suffix); label maps pair
    by the image's whole stem, so only a label-map reading warns that they will not pair."""
    drive = CASES["DRIVE: the vessels folder, not the field-of-view mask/"][0]
    tree = {rel: values if "1st_manual" in rel else content for rel, content in drive.items()}
    reading = detect(_write(tmp_path / "data", tree))
    assert reading.format == format_
    assert any("label maps do not cut off" in note for note in reading.notes) == said


@pytest.mark.parametrize("name, split", [("train", "train"), ("Training", "train"),
                                         ("valid", "val"), ("dev", "val"), ("VALIDATION", "val"),
                                         ("testing", "test"), ("default", None), ("trainval", None)])  # fmt: skip
def test_detection_reads_split_names_by_the_loaders_aliases(name, split):
    assert split_of(name) == split
