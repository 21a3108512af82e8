"""The YOLO segmentation format as Ultralytics (and Roboflow's "YOLOv8") exports it: `data.yaml`
names the classes, each image has a `.txt` of normalised polygons, one instance per line.

  ultralytics  <root>/images/<split>/x.jpg   <root>/labels/<split>/x.txt
  roboflow     <root>/<split>/images/x.jpg   <root>/<split>/labels/x.txt   (val named `valid`)
  no split     <root>/images/x.jpg           <root>/labels/x.txt           (split `.`)

Where the class names and each split's folder are: `samexp.data.yolo_layout`.

Every label file is read and checked when a split is built (a bad line stops the run naming its
file and line); polygons are kept as compressed RLE and decoded by pycocotools when a sample is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError
from samexp.config.limits import check_instances, read_lines
from samexp.config.options import option
from samexp.config.paths import dataset_name
from samexp.data.base import IMAGE_EXTENSIONS, Sample, make_sample, read_image_rgb
from samexp.data.bounds import Reach
from samexp.data.coco import CocoDataset
from samexp.data.files import shown
from samexp.data.frame import Pipeline
from samexp.data.orientation import displayed_shape, image_header
from samexp.data.segmentation import polygons_rle
from samexp.data.split_folders import evaluated_splits
from samexp.data.splits import (
    DatasetSplits,
    TestFraction,
    TrainLimit,
    require_dataset_root,
)
from samexp.data.yolo_layout import (
    NAMES_FILES,
    ClassNames,
    class_names,
    find_images,
    labels_folder,
    missing_split,
    read_data_yaml,  # noqa: F401  (its home before yolo_layout: callers import it from here)
)

logger = logging.getLogger(__name__)

_SKIPS = ("missing_label", "empty_label", "bad_polygon", "no_instances")  # summary() counters
TOLERANCE = 0.01  # exporters round: 1.0004 or -0.0002 is on the border, 1.2 is not normalised


@dataclass
class YoloImage:
    """One image of a split: where it is, its label file, its kept instances."""

    name: str  # its path under the images folder, without suffix, '/' -> '__'
    path: Path
    label: Path
    rles: list[dict] = field(default_factory=list)  # compressed RLE per kept instance
    categories: list[str] = field(default_factory=list)  # class name per kept instance
    skips: list[tuple[str, str]] = field(default_factory=list)  # (counter, reason) per skip
    outside: list[Reach] = field(default_factory=list)  # polygons clipped to it (data.bounds)


def _polygon(values: list[str], where: str, classes: ClassNames) -> tuple[str, list[float]]:
    """(class name, [x1, y1, ...]) of one label line, checked; a short polygon comes back short."""
    if len(values) == 5:
        raise DatasetError(
            f"{where} holds a box (class x_center y_center width height), not a segmentation "
            f"polygon: this is a YOLO detection export; export the segmentation format "
            f"(polygons), or make masks from the boxes (e.g. with SAM) first"
        )
    try:
        number = [float(v) for v in values]
    except ValueError as e:
        raise DatasetError(f"{where}: not a number ({e})") from e
    category = classes.of(values[0], number[0], where)
    coords = np.array(number[1:])
    if len(coords) % 2:
        raise DatasetError(f"{where}: {len(coords)} coordinates; a polygon is x y pairs")
    if len(coords) and not ((coords >= -TOLERANCE) & (coords <= 1 + TOLERANCE)).all():
        raise DatasetError(
            f"{where}: coordinates must be normalised to 0..1 (x / width, y / height), got "
            f"{coords.min():g}..{coords.max():g}; pixel coordinates are not YOLO labels"
        )
    # a vertex just past the border (TOLERANCE) stays: polygons_rle clips it and counts it
    return category, coords.tolist()


def _read_label(im: YoloImage, classes: ClassNames) -> None:
    """Fill `im` with the instances of its label file (or record why it has none)."""
    if not im.label.is_file():
        im.skips.append(("missing_label", "no label file: a background image"))
        return
    (h, w), orientation = image_header(im.path)
    h, w = displayed_shape((h, w), orientation)  # Ultralytics normalises by the displayed size
    lines = [(i, line.split()) for i, line in enumerate(read_lines(im.label), 1)]
    lines = [(i, values) for i, values in lines if values]
    check_instances(len(lines), (h, w), shown(im.label), "label lines")
    if not lines:
        im.skips.append(("empty_label", "empty label file: a background image"))
    for number, values in lines:
        category, coords = _polygon(values, f"{shown(im.label)} line {number}", classes)
        if len(coords) < 6:
            im.skips.append(("bad_polygon", f"line {number}: polygon with < 3 points"))
            continue
        pixels = (np.array(coords).reshape(-1, 2) * (w, h)).ravel().tolist()
        where = f"{shown(im.label)} line {number}"
        rle = polygons_rle([pixels], (h, w), where, outside=im.outside)
        if mask_utils.area(rle) == 0:
            im.skips.append(("bad_polygon", f"line {number}: polygon encloses no pixel"))
            continue
        im.rles.append(rle)
        im.categories.append(category)
    if lines and not im.rles:
        im.skips.append(("no_instances", "no instance left to train or evaluate on"))


def read_yolo_split(images_dir: Path, names: list[str] | ClassNames | None,
                    labels_dir: Path | None = None) -> list[YoloImage]:  # fmt: skip
    """Every image under `images_dir` (sub-folders too) with its instances from its label file:
    the same relative path under `labels_dir` (default: Ultralytics' rule, `labels_folder`),
    only the image's extension replaced by `.txt` (`x_jpg.rf.8fd93a.jpg` -> `x_jpg.rf.8fd93a.txt`)."""
    if not isinstance(names, ClassNames):
        names = ClassNames(tuple(names) if names is not None else None, "data.yaml's names")
    labels_dir = labels_folder(images_dir) if labels_dir is None else labels_dir
    files = sorted(
        p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise DatasetError(f"{shown(images_dir)} holds no image files; add images or fix the path")
    images: dict[Path, YoloImage] = {}
    for path in files:
        rel = path.relative_to(images_dir)
        label = labels_dir / rel.with_suffix(".txt")
        if label in images:
            raise DatasetError(
                f"{shown(path)} and {shown(images[label].path)} share the label file "
                f"{shown(label)}; rename one of them"
            )
        images[label] = YoloImage("__".join(rel.with_suffix("").parts), path, label)
    texts = set(labels_dir.rglob("*.txt")) if labels_dir.is_dir() else set()
    if not texts & images.keys():
        found = "does not exist" if not labels_dir.is_dir() else (
            f"holds {len(texts)} other .txt file(s)" if texts else "holds no .txt file")  # fmt: skip
        expected = next(iter(images)).relative_to(labels_dir)
        raise DatasetError(
            f"none of the {len(images)} images in {shown(images_dir)} has a label file in "
            f"{shown(labels_dir)} (it {found}; e.g. {shown(expected)} is not there); "
            f"labels are read by Ultralytics' rule (the last 'images' folder of the path becomes "
            f"'labels'; with none, beside the images): set dataset.images_dir to the images' "
            f"folder pattern"
        )
    stray = sorted(p for p in texts - images.keys() if p.name not in NAMES_FILES)
    if stray:
        listed = ", ".join(shown(p.relative_to(labels_dir)) for p in stray[:5])
        raise DatasetError(
            f"{len(stray)} label file(s) in {shown(labels_dir)} have no image in "
            f"{shown(images_dir)}: {listed}{' ...' * (len(stray) > 5)}; add the images or remove "
            f"the labels"
        )
    for im in images.values():
        _read_label(im, names)
    bad = [f"{im.label.name} {r.split(':')[0]}" for im in images.values()
           for k, r in im.skips if k == "bad_polygon"]  # fmt: skip
    if bad:  # one line per split: a tool's habit repeats on every file
        logger.warning("%s: %d polygon(s) with fewer than 3 points or no area (%s%s); skipping them",
                       shown(labels_dir), len(bad), ", ".join(bad[:5]), " ..." * (len(bad) > 5))  # fmt: skip
    return list(images.values())


class YoloDataset(CocoDataset):
    """One split; K = all kept instances of an image, `categories` names them."""

    SKIPS = _SKIPS

    def __getitem__(self, index: int) -> Sample:
        im = self._images[index]
        masks = mask_utils.decode(im.rles).transpose(2, 0, 1).astype(bool)  # H×W×K -> K×H×W
        return make_sample(
            im.name, str(im.path), read_image_rgb(im.path, orient=True), masks, self.pipeline,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


@option("dataset", "yolo", provided=("pipeline",))
def yolo_splits(
    root: str,
    pipeline: Pipeline,
    name: str | None = None,  # in run names; default: the root folder's name
    # under root: `names`, optionally `train:`/`val:`/`test:` folders; null: the export has none
    # (names from classes.txt / classes.names / obj.names in the root, else the ids are the names)
    data_yaml: str | None = "data.yaml",
    # a split's images folder under root, `{split}` standing for its name (images/{split},
    # {split}/images); without `{split}`: <split>/<images_dir>; null: data.yaml's, else either
    images_dir: str | None = None,
    train_split: str = "train",  # `.`: the root itself (images/ + labels/, no split folders)
    val_split: str | None = "val",  # also found as valid, validation, dev; null: none
    test_split: str | None = "test",  # null: held out of train (test_fraction)
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of a YOLO segmentation dataset (the `conf/dataset/yolo.yaml` target).

    As for COCO: with a test part, train/val/test as found; with train and val only, val is the
    test split (what users evaluate on: a published val split is the one scores are compared on)
    and the runner carves its validation split from train; with train alone, or with
    `test_split=null` or a `test_fraction`, the test split is held out of train.
    """
    base, name = require_dataset_root(root), dataset_name(name, root)
    classes, stated = class_names(base, data_yaml)
    if stated.get("path"):
        logger.info("%s: ignoring its path: %s; the dataset root is %s",
                    data_yaml, stated["path"], shown(base))  # fmt: skip

    def find(role: str, split: str | None) -> Path | None:
        return find_images(base, role, split, images_dir, stated.get(role)) if split else None

    train, val, test = find("train", train_split), find("val", val_split), find("test", test_split)
    if train is None:
        raise missing_split(base, "train", train_split, images_dir)
    val, test = evaluated_splits(name, val, test, test_split, test_fraction)
    shown_names = ", ".join(classes.names) if classes.names else "named by their ids"
    logger.info("%s: YOLO classes %s; train: %s", name, shown_names, shown(train))

    def dataset(images: Path | None, split: str) -> YoloDataset | None:
        if images is None:
            return None
        labels = labels_folder(images, base.resolve())
        return YoloDataset(read_yolo_split(images, classes, labels), pipeline, f"{name} {split}")

    return DatasetSplits.assemble(name, base, dataset(train, "train"), dataset(test, "test"),
                                  dataset(val, "val"), limit, test_fraction)  # fmt: skip
