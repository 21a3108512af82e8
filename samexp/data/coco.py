"""The COCO instance-segmentation format: one sample per image, carrying all its instances.

The JSON is read and checked in full by `samexp.data.coco_json` when a split is built (a bad file
stops the run before any model is built, naming the file); masks are kept as compressed RLE and
decoded by pycocotools only when a sample is read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from samexp.checks import NON_NEGATIVE, Range, because
from samexp.data.base import Sample, make_sample, read_image_rgb
from samexp.data.bounds import say_clipped
from samexp.data.coco_json import CocoImage, read_coco
from samexp.data.coco_layout import CocoFile, find_layout
from samexp.data.orientation import apply_orientation
from samexp.data.splits import DatasetSplits, TrainLimit, dataset_name, require_dataset_root
from samexp.errors import DatasetError
from samexp.options import option

logger = logging.getLogger(__name__)

_SKIPS = (
    "crowd",
    "category",
    "bad_polygon",
    "small",
    "no_instances",
    "missing_image",
)  # summary() counters


class CocoDataset(Dataset[Sample]):
    """Some images of a COCO file; K = all kept instances of an image, `categories` names them.
    Other polygon formats (YOLO, LabelMe) keep their images the same way, with their own skip
    counters (`SKIPS`)."""

    SKIPS: tuple[str, ...] = _SKIPS  # summary() counters

    def __init__(self, images: list[CocoImage], img_size: int, label: str = "coco") -> None:
        if img_size <= 0:
            raise DatasetError(f"img_size must be positive, got {img_size}")
        self.img_size = img_size
        self.transform = None  # training augmentation, set by the runner on the train split only
        self._images = [im for im in images if im.rles]
        self._skips = [(kind, im.name, reason) for im in images for kind, reason in im.skips]
        self.skipped = [(name, reason) for _, name, reason in self._skips]
        # said once per split and counted: polygons reaching past their image are clipped to it
        self.clipped = say_clipped(logger, label, "polygon(s)", [im.outside for im in images])
        counts = {k: v for k, v in self.summary().items() if k.startswith("skipped_") and v}
        skipped = ", ".join(f"{v} {k[8:].replace('_', ' ')}" for k, v in counts.items()) or "none"
        n = sum(len(im.rles) for im in self._images)
        logger.info("%s: %d images, %d instances; skipped: %s", label, len(self), n, skipped)
        if not self._images:
            raise DatasetError(f"{label}: no image has an instance left to train or evaluate on")

    @property
    def names(self) -> list[str]:
        return [im.name for im in self._images]

    @property
    def image_paths(self) -> list[Path]:
        return [im.path for im in self._images]

    @property
    def class_names(self) -> list[str]:
        """The categories of the kept instances, sorted (what promptless training learns)."""
        return sorted({c for im in self._images for c in im.categories})

    def summary(self) -> dict[str, int]:
        """Counts for the run log: images loaded, every kind of skip (instances or images), and
        polygons clipped to their image."""
        counts = Counter(kind for kind, _, _ in self._skips)
        skips = {f"skipped_{k}": counts[k] for k in self.SKIPS}
        return {"loaded": len(self._images), **skips, "clipped_outside": self.clipped}

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:
        im = self._images[index]
        image = apply_orientation(read_image_rgb(im.path), im.orientation)
        masks = mask_utils.decode(im.rles).transpose(2, 0, 1).astype(bool)  # H×W×K -> K×H×W
        return make_sample(
            im.name, str(im.path), image, masks, self.img_size,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


def _hold_out(
    images: list[CocoImage], val_size: float, seed: int, source: Path
) -> tuple[list[CocoImage], list[CocoImage]]:
    """Seeded (train, held-out) parts with max(1, round(val_size × usable)) usable images held out.

    Images without instances go wherever the shuffle puts them, so each part reports its own skips.
    """
    usable = sum(1 for im in images if im.rles)
    k = max(1, round(usable * val_size))
    if usable - k < 1:
        raise DatasetError(
            f"{source}: {usable} image(s) with instances, too few to hold out val_size={val_size} "
            f"and still train; add images or use the pre-split layout"
        )
    held: set[int] = set()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    for i in order:
        if k == 0:
            break
        held.add(i)
        k -= bool(images[i].rles)
    return [im for i, im in enumerate(images) if i not in held], [images[i] for i in sorted(held)]


@option("dataset", "coco", provided=("img_size",))
def coco_splits(
    name: str | None,  # in run names; null: the root folder's name
    root: str,
    img_size: int,
    images_dir: str = "images",
    annotations: str = "annotations.json",
    train_split: str = "train",
    val_split: str = "val",  # Roboflow's `valid` is accepted too
    test_split: str = "test",
    val_size: Annotated[
        float, because(Range(0, 1, open_low=True, open_high=True), "share held out")
    ] = 0.2,  # fmt: skip
    seed: int = 0,
    # keep only these categories, or with group_by=supercategory also super-categories (default: all)
    categories: Sequence[str] | None = None,
    # instances smaller than this many pixels are skipped (and counted)
    min_area: Annotated[float, because(NON_NEGATIVE, "pixels")] = 0.0,
    # what an instance counts as (its class in metrics): its category, or that one's supercategory
    group_by: Literal["category", "supercategory"] = "category",
    # an image listed in the JSON without its file: stop (error), or skip it and count it (skip)
    missing_images: Literal["error", "skip"] = "error",
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of a COCO dataset (the `conf/dataset/coco.yaml` target); layout from the files
    (`samexp.data.coco_layout`).

    Pre-split (or Roboflow's train/valid/test): train, val and test parts as found; with only a
    val part, that one is the test split. Otherwise one file whose images are split here, seeded.
    Without a val part the runner carves its validation split from train.
    """
    base = require_dataset_root(root)
    name = dataset_name(name, root)
    cats = list(categories) if categories is not None else None
    layout = find_layout(base, annotations, images_dir, train_split, val_split, test_split)
    logger.info("%s: COCO layout '%s' (train: %s)", name, layout.kind, layout.train.annotations)

    def read(file: CocoFile) -> list[CocoImage]:
        return read_coco(file.annotations, file.images_dir, cats, min_area, group_by,
                         root=base, missing_images=missing_images)  # fmt: skip

    def dataset(images: list[CocoImage], split: str) -> CocoDataset:
        return CocoDataset(images, img_size, f"{name} {split}")

    if layout.test is None:
        train, held = _hold_out(read(layout.train), val_size, seed, layout.train.annotations)
    else:
        train, held = read(layout.train), read(layout.test)
    return DatasetSplits(
        name=name,
        train=dataset(train, "train"),
        test=dataset(held, "test"),
        val=dataset(read(layout.val), "val") if layout.val is not None else None,
        limit=limit,
    )
