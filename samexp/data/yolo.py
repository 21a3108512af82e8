"""The YOLO segmentation format as Ultralytics (and Roboflow's "YOLOv8") exports it: `data.yaml`
names the classes, each image has a `.txt` of normalised polygons, one instance per line.

  ultralytics  <root>/images/<split>/x.jpg   <root>/labels/<split>/x.txt
  roboflow     <root>/<split>/images/x.jpg   <root>/<split>/labels/x.txt   (val named `valid`)

Every label file is read and checked when a split is built (a bad line stops the run naming its
file and line); polygons are kept as compressed RLE and decoded by pycocotools when a sample is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from pycocotools import mask as mask_utils

from samexp.data.base import IMAGE_EXTENSIONS, Sample, make_sample, read_image_rgb
from samexp.data.bounds import Reach
from samexp.data.coco import CocoDataset
from samexp.data.files import shown
from samexp.data.orientation import displayed_shape, image_header
from samexp.data.segmentation import polygons_rle
from samexp.data.splits import DatasetSplits, TrainLimit, dataset_name, require_dataset_root
from samexp.errors import DatasetError
from samexp.limits import TEXT_BYTES, check_instances, load_yaml, read_bytes
from samexp.options import option

logger = logging.getLogger(__name__)

_SKIPS = ("missing_label", "empty_label", "bad_polygon", "no_instances")  # summary() counters
TOLERANCE = 0.01  # exporters round: 1.0004 or -0.0002 is on the border, 1.2 is not normalised
VAL_ALIASES = ("valid",)  # Roboflow's name for the val split


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


def _inside(base: Path, path: Path, what: str) -> Path:
    """`path` resolved, refused when it leaves `base` (a `..` or a symlink pointing out)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise DatasetError(f"{what} {shown(path)} is outside the dataset root {shown(base)}")
    return resolved


def read_data_yaml(path: Path) -> tuple[list[str], dict]:
    """Class names by id from `data.yaml` (a list, or a mapping {0: cat, 1: dog} with ids
    0..n-1) and the whole file. Read safely (a dataset file never runs code) and bounded: size
    limited, aliases refused (`samexp.limits.load_yaml`).
    """
    if not path.is_file():
        raise DatasetError(f"{shown(path)} does not exist; a YOLO dataset names its classes there")
    data = load_yaml(path)
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except ValueError as e:
            raise DatasetError(f"{shown(path)}: 'names' keys must be class ids ({e})") from e
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(f"{shown(path)}: 'names' ids must be 0..{len(by_id) - 1}")
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise DatasetError(
            f"{shown(path)}: no 'names' list; write e.g. `names: [cat, dog]` or "
            f"`names: {{0: cat, 1: dog}}`"
        )
    return [str(n) for n in names], data


def _labels_dir(images_dir: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`."""
    parts = list(images_dir.parts)
    if "images" not in parts:
        raise DatasetError(
            f"{shown(images_dir)}: a YOLO images folder must be named 'images' (its labels are "
            f"in the 'labels' folder beside it)"
        )
    at = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:at], "labels", *parts[at + 1 :])


def find_split(
    root: Path, stated: object, split: str, aliases: tuple[str, ...] = ()
) -> Path | None:
    """The images folder of `split`: as `data.yaml` states it, else found by either layout."""
    if isinstance(stated, str):
        rel = PurePosixPath(stated)
        path = root / rel
        # Roboflow writes `../train/images`, relative to a folder above the root: Ultralytics
        # then tries without the `../`, and so does this (anything still outside is refused)
        if not path.is_dir() and rel.parts[:1] == ("..",):
            path = root / PurePosixPath(*rel.parts[1:])
        if path.is_dir():
            return _inside(root, path, f"data.yaml's {split}:")
        logger.warning("data.yaml's %s: %s is not a folder under %s; looking for %s/ by layout",
                       split, stated, shown(root), split)  # fmt: skip
    elif stated is not None:
        raise DatasetError(
            f"data.yaml's {split}: {stated!r:.80} is not one folder; samexp reads a folder of "
            f"images per split (lists and .txt file lists are not supported)"
        )
    for name in dict.fromkeys((split, *aliases)):
        for path in (root / "images" / name, root / name / "images"):
            if path.is_dir():
                return _inside(root, path, f"{split} images folder")
    return None


def _polygon(values: list[str], where: str, n_classes: int) -> tuple[int, list[float]]:
    """(class id, [x1, y1, ...]) of one label line, checked; a short polygon comes back short."""
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
    if not number[0].is_integer() or not 0 <= number[0] < n_classes:
        raise DatasetError(
            f"{where}: class id {values[0]} is not in data.yaml's names (0..{n_classes - 1})"
        )
    coords = np.array(number[1:])
    if len(coords) % 2:
        raise DatasetError(f"{where}: {len(coords)} coordinates; a polygon is x y pairs")
    if len(coords) and not ((coords >= -TOLERANCE) & (coords <= 1 + TOLERANCE)).all():
        raise DatasetError(
            f"{where}: coordinates must be normalised to 0..1 (x / width, y / height), got "
            f"{coords.min():g}..{coords.max():g}; pixel coordinates are not YOLO labels"
        )
    # a vertex just past the border (TOLERANCE) stays: polygons_rle clips it and counts it
    return int(number[0]), coords.tolist()


def _read_label(im: YoloImage, names: list[str]) -> None:
    """Fill `im` with the instances of its label file (or record why it has none)."""
    if not im.label.is_file():
        im.skips.append(("missing_label", "no label file: a background image"))
        return
    (h, w), orientation = image_header(im.path)
    h, w = displayed_shape((h, w), orientation)  # Ultralytics normalises by the displayed size
    try:
        text = read_bytes(im.label, TEXT_BYTES).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{shown(im.label)}: cannot be read as a text label file ({e})") from e
    lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1)]
    lines = [(i, values) for i, values in lines if values]
    check_instances(len(lines), (h, w), shown(im.label), "label lines")
    if not lines:
        im.skips.append(("empty_label", "empty label file: a background image"))
    for number, values in lines:
        class_id, coords = _polygon(values, f"{shown(im.label)} line {number}", len(names))
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
        im.categories.append(names[class_id])
    if lines and not im.rles:
        im.skips.append(("no_instances", "no instance left to train or evaluate on"))


def read_yolo_split(images_dir: Path, names: list[str]) -> list[YoloImage]:
    """Every image under `images_dir` (sub-folders too) with its instances from `labels/`."""
    labels_dir = _labels_dir(images_dir)
    files = sorted(
        p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    if not files:
        raise DatasetError(f"{shown(images_dir)} holds no image files; add images or fix the path")
    images: dict[Path, YoloImage] = {}
    for path in files:
        rel = path.relative_to(images_dir).with_suffix("")
        label = labels_dir / rel.with_suffix(".txt")
        if label in images:
            raise DatasetError(
                f"{shown(path)} and {shown(images[label].path)} share the label file "
                f"{shown(label)}; rename one of them"
            )
        images[label] = YoloImage("__".join(rel.parts), path, label)
    stray = sorted(set(labels_dir.rglob("*.txt")) - set(images)) if labels_dir.is_dir() else []
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
            im.name, str(im.path), read_image_rgb(im.path, orient=True), masks, self.img_size,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


@option("dataset", "yolo", provided=("img_size",))
def yolo_splits(
    root: str,
    img_size: int,
    name: str | None = None,  # in run names; default: the root folder's name
    data_yaml: str = "data.yaml",  # under root: `names`, optionally `train:`/`val:`/`test:`
    train_split: str = "train",
    val_split: str = "val",  # Roboflow's `valid` is accepted too
    test_split: str = "test",
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of a YOLO segmentation dataset (the `conf/dataset/yolo.yaml` target).

    As for COCO: with a test part, train/val/test as found; with train and val only, val is the
    test split (what is evaluated) and the runner carves its validation split from train.
    """
    base, name = require_dataset_root(root), dataset_name(name, root)
    yaml_path = _inside(base, base / data_yaml, "dataset.data_yaml")
    names, stated = read_data_yaml(yaml_path)
    if stated.get("path"):
        logger.info("%s: ignoring its path: %s; the dataset root is %s",
                    shown(yaml_path), stated["path"], shown(base))  # fmt: skip
    train = find_split(base, stated.get("train"), train_split)
    val = find_split(base, stated.get("val"), val_split, VAL_ALIASES)
    test = find_split(base, stated.get("test"), test_split)
    if train is None or (val is None and test is None):
        raise DatasetError(
            f"no YOLO {'train' if train is None else 'val or test'} images under {shown(base)}: "
            f"expected images/{train_split}/ and images/{val_split}/ (Ultralytics) or "
            f"{train_split}/images/ and {val_split}/images/ (Roboflow, val may be valid/), or "
            f"folders named by data.yaml's train:/val:/test:"
        )
    if test is None:  # train + val only: val is what is evaluated (test/* metrics)
        val, test = None, val
    logger.info("%s: YOLO classes %s; train: %s", name, ", ".join(names), shown(train))

    def dataset(images_dir: Path, split: str) -> YoloDataset:
        return YoloDataset(read_yolo_split(images_dir, names), img_size, f"{name} {split}")

    return DatasetSplits(
        name=name,
        train=dataset(train, "train"),
        test=dataset(test, "test"),
        val=dataset(val, "val") if val is not None else None,
        limit=limit,
    )
