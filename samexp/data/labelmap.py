"""The label-map (semantic) format: `<root>/<split>/images/<name>.<ext>` paired by stem with
`<split>/labels/<name>.png`, whose pixel values are the class ids of the root's class list
(`samexp.data.classes`: classes.txt, class_names.txt or _classes.csv), or whose colours are
classes of a colour table (CVAT's labelmap.txt). Folders follow `split_folders.split_folder` (`{split}`
templates, split `.`), labels may sit beside their images with a suffix (`x_mask.png`), and a
split may be the names a list holds (VOC's `ImageSets/Segmentation/train.txt`).

SAM segments one object per prompt, so each class present in an image becomes one target
instance (its mask: label == id) and metrics come per class. As in the folder format, every
file problem is found at construction: each label is read once, images only by their header.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from torch.utils.data import Dataset

from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.errors import DatasetError
from samexp.config.limits import check_instances
from samexp.config.options import option
from samexp.config.paths import dataset_name
from samexp.data.base import (
    Sample,
    decode_unchanged,
    make_sample,
    model_pipeline,
    read_image_rgb,
)
from samexp.data.classes import LabelClasses, label_classes
from samexp.data.colours import colours_to_ids
from samexp.data.files import open_image, read_image_bytes, shown
from samexp.data.frame import Pipeline
from samexp.data.orientation import apply_orientation, image_header, mask_orientation
from samexp.data.pairing import find_pairs, listing
from samexp.data.split_folders import SPLIT, split_roles
from samexp.data.splits import DatasetSplits, TestFraction, TrainLimit

logger = logging.getLogger(__name__)


def read_label(path: Path, classes: LabelClasses | None = None) -> np.ndarray:
    """H×W class ids exactly as stored: palette indices for 'P' PNGs, 8/16-bit values otherwise;
    with a colour table (`classes.colours`), a colour or palette label's colours mapped to ids.

    Palette PNGs are read with PIL because cv2 expands them to their display colours (the classic
    bug); 16-bit ids are kept as uint16, never scaled to 8 bits as images are. The file is read
    once, checked complete (a truncated label would read as background).
    """
    data = read_image_bytes(path)
    colours = classes.colours if classes is not None else None
    try:
        with open_image(io.BytesIO(data), path) as image:
            bands = image.getbands()
            if colours is not None and (image.mode == "P" or len(bands) >= 3):
                rgb = np.asarray(image.convert("RGB"))
                return colours_to_ids(rgb, colours, shown(path), classes.path)
            if image.mode in ("P", "1"):
                return np.asarray(image).astype(np.uint8)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises several types for bad files; all mean "unreadable"
        raise DatasetError(shown(f"{path}: cannot be read as an image ({exc})")) from exc
    array = decode_unchanged(data, path)
    if len(bands) > 1 or (array.ndim == 3 and array.shape[2] > 1):
        raise DatasetError(
            f"{path}: label maps must be single-channel class ids, but this file has "
            f"{len(bands)} channels ({''.join(bands)}); convert it to one id per pixel "
            f"(8/16-bit grayscale or palette PNG), or, for colour labels, set "
            f"dataset.classes_file to a colour table (`name:r,g,b::` per line, CVAT's labelmap.txt)"
        )
    if array.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: unsupported label type {array.dtype}; save 8- or 16-bit ids")
    return array.reshape(array.shape[:2])


@dataclass(frozen=True)
class _Item:
    name: str
    image_path: Path
    label_path: Path
    orientation: int  # turns the label onto the image as displayed (see `mask_orientation`)
    class_ids: tuple[int, ...]  # target classes kept for this image: one instance each


class LabelMapDataset(Dataset[Sample]):
    """One split of a label-map dataset; K = the number of target classes present per image."""

    def __init__(
        self,
        root: str,
        split: str,
        pipeline: Pipeline,
        classes: LabelClasses | None = None,  # default: the root's class list, background [0]
        images_dir: str = "images",
        labels_dir: str = "labels",
        min_area: int = 0,
        label_suffix: str = "",  # label stem = image stem + this (`x_mask.png`)
        split_files: str | None = None,  # `ImageSets/Segmentation/{split}.txt`: the split's names
        role: str | None = None,  # train, val or test: names the split's key in refusals
    ) -> None:
        if min_area < 0:
            raise DatasetError(f"min_area must be ≥ 0 pixels, got {min_area}")
        self.root, self.split, self.min_area = Path(root), split, min_area
        self.pipeline = model_pipeline(pipeline)
        classes = classes if classes is not None else label_classes(self.root)
        self._label_classes = classes  # what `read_label` reads colour labels by
        self.classes_path, self.classes, self._known = classes.path, classes.targets, classes.known
        self.skipped: list[tuple[str, str]] = []  # images left out, and why
        self.skipped_regions: list[tuple[str, str, int]] = []  # (image, class, area) under min_area
        self.transform = None  # training augmentation, set by the runner on the train split only
        found = find_pairs(
            self.root, split, images_dir, labels_dir, "label", label_suffix,
            split_list=split_files, role=role,
        )  # fmt: skip
        self.unreadable = sorted(found.unreadable.items())  # (name, why): image/label unopenable
        not_png = [label for _, label in found.pairs.values() if label.suffix.lower() != ".png"]
        if not_png:
            raise DatasetError(
                f"{found.others_dir}: label maps must be PNG files (lossless ids), got "
                f"{listing(not_png)}; save them as PNG"
            )
        self._items: list[_Item] = []
        for name, (image_path, label_path) in found.pairs.items():
            self._add(name, image_path, label_path)
        if not self._items:
            raise DatasetError(
                f"{found.where}: no label map contains a class to segment "
                f"({', '.join(self.classes.values())}); nothing to train or evaluate on"
            )
        counts = {k: v for k, v in self.summary().items() if "/" not in k}
        per_class = ", ".join(f"{n}={c}" for n, c in self.instances_per_class().items())
        logger.info("%s/%s: %s; instances per class: %s", self.root.name, split, counts, per_class)

    def _add(self, name: str, image_path: Path, label_path: Path) -> None:
        image_shape, orientation = image_header(image_path)
        label = read_label(label_path, self._label_classes)
        turn = mask_orientation(
            image_path, image_shape, orientation, label_path, label.shape, kind="label"
        )
        ids, areas = np.unique(label, return_counts=True)
        self._label_classes.admit(ids.tolist())
        unknown = [i for i in ids.tolist() if i not in self._known and i not in self.classes]
        if unknown:
            values = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
            raise DatasetError(
                f"{shown(label_path)}: label values {values} are not in {self.classes_path} (nor "
                f"background/ignore ids); add them as classes or fix the label map"
            )
        kept = []
        for class_id, area in zip(ids.tolist(), areas.tolist(), strict=True):
            if class_id not in self.classes:
                continue
            if area < self.min_area:
                self.skipped_regions.append((name, self.classes[class_id], area))
                continue
            kept.append(class_id)
        if not kept:
            logger.warning(
                "%s: no class to segment in its label map, skipping %s", shown(label_path), name
            )
            self.skipped.append((name, "no target class"))
            return
        check_instances(len(kept), label.shape, shown(label_path), "classes")  # a mask each
        self._items.append(_Item(name, image_path, label_path, turn, tuple(kept)))

    def instances_per_class(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        """Target instances per class name, in class-id order (zeros included), of all items or
        of those at `indices`."""
        items = self._items if indices is None else [self._items[i] for i in indices]
        counts = Counter(i for item in items for i in item.class_ids)
        return {name: counts[i] for i, name in sorted(self.classes.items())}

    def instance_summary(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        """The instance counts of `summary()`, also for a part of the split (`views.Subset`)."""
        per_class = self.instances_per_class(indices)
        return {
            "instances": sum(per_class.values()),
            **{f"instances/{name}": count for name, count in per_class.items()},
        }

    @property
    def names(self) -> list[str]:
        return [item.name for item in self._items]

    @property
    def image_paths(self) -> list[Path]:
        return [item.image_path for item in self._items]

    @property
    def class_names(self) -> list[str]:
        """The target classes, in id order (what promptless training learns a prompt for)."""
        return [name for _, name in sorted(self.classes.items())]

    def summary(self) -> dict[str, int]:
        """Counts for the run log: what was loaded, what was left out and why, instances per class."""
        return {
            "loaded": len(self._items),
            "skipped_no_targets": len(self.skipped),
            "skipped_unreadable": len(self.unreadable),
            "skipped_small_region": len(self.skipped_regions),
            **self.instance_summary(),
        }

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        item = self._items[index]
        # Re-read rather than kept from validation: a label is small to decode, large to hold.
        label = apply_orientation(
            read_label(item.label_path, self._label_classes), item.orientation
        )
        return make_sample(
            item.name,
            str(item.image_path),
            read_image_rgb(item.image_path, orient=True),
            np.stack([label == i for i in item.class_ids]),
            self.pipeline,
            categories=[self.classes[i] for i in item.class_ids],
            transform=self.transform,
        )


@option("dataset", "labelmap", provided=("pipeline",))
def labelmap_splits(
    name: str | None,  # in run names; null: the root folder's name
    root: str,
    pipeline: Pipeline,
    train_split: str = "train",  # ".": the root itself
    test_split: str | None = "test",  # null: held out of train by test_fraction
    val_split: str | None = None,
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    # under each split's folder; with {split}, under the root: images/{split}, {split}annot
    images_dir: str = "images",
    labels_dir: str = "labels",
    label_suffix: str = "",  # label stem = image stem + this: `x_mask.png` beside `x.jpg`
    # a split is the names its list holds (e.g. ImageSets/Segmentation/{split}.txt, VOC, CVAT);
    # images_dir and labels_dir are then under the root
    split_files: str | None = None,
    # under root; unset: the one of classes.txt, class_names.txt, _classes.csv, labelmap.txt
    # (a colour table: RGB labels), class_dict.csv that root (or each split folder) holds
    classes_file: str | None = None,
    ignore_index: int | None = 255,  # pixels with this value belong to no target
    # classes that are never targets; unset: [0], with a warning if 0 names a real class
    background_ids: Iterable[int] | None = None,
    # class regions smaller than this many pixels are skipped (and counted)
    min_area: Annotated[int, because(NON_NEGATIVE, "pixels")] = 0,
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of one label-map dataset (the `conf/dataset/labelmap.yaml` target); the class
    list is read, and its warnings given, once for all splits."""
    if split_files is not None and SPLIT not in split_files:
        raise DatasetError(
            f"dataset.split_files={split_files} must hold {SPLIT}, the split's name in the list "
            f"file's path (e.g. dataset.split_files=ImageSets/Segmentation/{SPLIT}.txt)"
        )
    classes = label_classes(root, classes_file, background_ids, ignore_index)
    roles = split_roles(train_split, val_split, test_split)

    def load(split: str) -> LabelMapDataset:
        return LabelMapDataset(
            root, split, pipeline, classes, images_dir, labels_dir, min_area, label_suffix,
            split_files, roles.get(split),
        )  # fmt: skip

    return DatasetSplits.from_splits(dataset_name(name, root), load, train_split, test_split,
                                     val_split, limit, root, test_fraction)  # fmt: skip
