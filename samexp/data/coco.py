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

from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.errors import DatasetError
from samexp.config.options import option
from samexp.config.paths import dataset_name
from samexp.data.base import Sample, make_sample, model_pipeline, read_image_rgb
from samexp.data.bounds import say_clipped
from samexp.data.coco_json import CocoImage, read_coco
from samexp.data.coco_layout import CocoFile, find_layout
from samexp.data.frame import Pipeline
from samexp.data.orientation import apply_orientation
from samexp.data.splits import (
    DatasetSplits,
    TestFraction,
    TrainLimit,
    require_dataset_root,
)

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

    def __init__(self, images: list[CocoImage], pipeline: Pipeline, label: str = "coco") -> None:
        self.pipeline = model_pipeline(pipeline)
        self.transform = None  # training augmentation, set by the runner on the train split only
        self._images = [im for im in images if im.rles]
        self._skips = [(kind, im.name, reason) for im in images for kind, reason in im.skips]
        # per listed image: the kept image its counts go with, its skips, its clipped polygons
        self._tallies = [(owner, Counter(kind for kind, _ in im.skips), len(im.outside))
                         for owner, im in zip(_owners(images), images, strict=True)]  # fmt: skip
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
        return {"loaded": len(self._images), **self.instance_summary()}

    def instance_summary(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        """The counts of `summary()` but `loaded`, also for a part of the images
        (`views.Subset`: a held-out test split keeps its own; the parts add up to the whole)."""
        chosen = None if indices is None else set(indices)
        counts: Counter[str] = Counter()
        clipped = 0
        for owner, skips, outside in self._tallies:
            if chosen is None or owner in chosen:
                counts.update(skips)
                clipped += outside
        return {**{f"skipped_{k}": counts[k] for k in self.SKIPS}, "clipped_outside": clipped}

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:
        im = self._images[index]
        image = apply_orientation(read_image_rgb(im.path), im.orientation)
        masks = mask_utils.decode(im.rles).transpose(2, 0, 1).astype(bool)  # H×W×K -> K×H×W
        return make_sample(
            im.name, str(im.path), image, masks, self.pipeline,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


def _owners(images: list[CocoImage]) -> list[int]:
    """Per listed image, the index of the kept image its counts go with: its own, or for an
    image left out whole (no instance left, file missing) the next kept image the file lists
    (else the last), so a part of the images counts the skips among its files."""
    kept = [i for i, im in enumerate(images) if im.rles]
    owners, k = [], 0
    for i in range(len(images)):
        while k < len(kept) - 1 and kept[k] < i:
            k += 1
        owners.append(k)
    return owners


@option("dataset", "coco", provided=("pipeline",))
def coco_splits(
    name: str | None,  # in run names; null: the root folder's name
    root: str,
    pipeline: Pipeline,
    # the COCO file under the root; null: found (coco_layout). `{split}` makes it one per split:
    # annotations/instances_{split}.json
    annotations: str | None = None,
    # where file_names are first looked up: under the split folder, or with `{split}` under the
    # root (images/{split}); then beside the JSON, then the root
    images_dir: str = "images",
    train_split: str = "train",
    val_split: str | None = "val",  # also valid/validation/dev; null: carved from train
    test_split: str | None = "test",  # also testing; null: held out of train by test_fraction
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    # keep only these categories, or with group_by=supercategory also super-categories (default: all)
    categories: Sequence[str] | None = None,
    # instances smaller than this many pixels are skipped (and counted)
    min_area: Annotated[float, because(NON_NEGATIVE, "pixels")] = 0.0,
    # what an instance counts as (its class in metrics): its category, or that one's supercategory
    group_by: Literal["category", "supercategory"] = "category",
    # an image listed in the JSON without its file: stop (error), or skip it and count it (skip)
    missing_images: Literal["error", "skip"] = "error",
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
    val_size: TestFraction = None,  # deprecated: the old name of test_fraction (said once)
) -> DatasetSplits:
    """The splits of a COCO dataset (the `conf/dataset/coco.yaml` target); which file is which
    split comes from the files (`samexp.data.coco_layout`), said in the log.

    Train, val and test files as found; with train and val only, val is the test split (what
    is evaluated) and the runner carves validation from train; without a test file, the test
    split is held out of train by a hash of each image's path (`DatasetSplits.assemble`).
    """
    base = require_dataset_root(root)
    name = dataset_name(name, root)
    cats = list(categories) if categories is not None else None
    layout = find_layout(base, annotations, images_dir, train_split, val_split, test_split,
                         test_fraction, name)  # fmt: skip
    logger.info("%s: COCO layout '%s': %s", name, layout.kind, layout.describe(base))
    for note in layout.notes:
        logger.info("%s: %s", name, note)
    if val_size is not None:
        logger.warning(
            "dataset.val_size is deprecated: it is dataset.test_fraction now (the share of the "
            "images held out as the test split, chosen by a hash of each file's path)"
        )
        if layout.test is None and test_fraction is None:
            test_fraction = val_size

    def dataset(file: CocoFile | None, split: str) -> CocoDataset | None:
        if file is None:
            return None
        images = read_coco(file.annotations, file.images_dir, cats, min_area, group_by,
                           root=base, missing_images=missing_images)  # fmt: skip
        return CocoDataset(images, pipeline, f"{name} {split}")

    held_out = layout.test is None  # the train file holds the test images until assemble
    return DatasetSplits.assemble(
        name, base, dataset(layout.train, "train+test" if held_out else "train"),
        dataset(layout.test, "test"), dataset(layout.val, "val"), limit, test_fraction,
    )  # fmt: skip
