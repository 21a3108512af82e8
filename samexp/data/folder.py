"""The folder format: `<root>/<split>/images/<name>.<ext>` paired by stem with `<split>/masks/<name>.<ext>`
(or any layout written with `{split}`: `images_dir=images/{split}`; split `.` is the root itself).

Annotation tools name masks after their image with a suffix (`x_mask.png`, `x_segmentation.png`,
`21_manual1.gif` for `21_training.tif`), sometimes in the images' own folder: `mask_suffix` and
`image_suffix` are cut off the stems before pairing, and a masks folder equal to the images folder
tells masks from images by the mask suffix.

Everything that can be wrong with the files is found at construction, so a bad dataset stops
the run before any model is built, with a message naming the file. Images are used as displayed
(EXIF orientation applied); a mask drawn on the stored pixels is turned with its image.
Which files pair with which is `samexp.data.pairing`'s (shared with label maps). Masks that end
up empty are reported once per split, by what they hold: all black, 0 and one dim value, or
small values 0..N that look like class ids (a label map read as binary masks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from torch.utils.data import Dataset

from samexp.config.checks import Range, because
from samexp.config.errors import DatasetError
from samexp.config.options import option, settings
from samexp.config.paths import dataset_name
from samexp.data.base import (
    Sample,
    make_sample,
    model_pipeline,
    read_image_rgb,
)
from samexp.data.files import shown
from samexp.data.frame import Pipeline
from samexp.data.orientation import apply_orientation, image_header, mask_orientation
from samexp.data.pairing import MASK_EXTENSIONS, find_pairs, listing, read_mask_gray
from samexp.data.split_folders import split_roles
from samexp.data.splits import DatasetSplits, TestFraction, TrainLimit

logger = logging.getLogger(__name__)

# A mask value is a level (not JPEG noise) when it is brighter than _NOISE and at least
# _LEVEL_SHARE of the mask's non-black pixels hold it; the rings' JPEG masks stay under 0.2%.
_NOISE = 16
_LEVEL_SHARE = 0.02
# An empty mask whose values are all at most this is "small": 0/1 masks, or class ids 0..N
_SMALL = 32
_LOSSY = frozenset({".jpg", ".jpeg"})  # their values are noisy: never read as class ids


@dataclass(frozen=True)
class _Empty:
    """A mask with no pixel above the threshold: what it holds decides the advice."""

    path: Path
    values: tuple[int, ...]  # its distinct non-zero values, ascending
    hinted: bool  # a dim level or one flat value (not only JPEG noise): worth a threshold hint
    regions: bool  # drawn in regions (most pixels equal their right neighbour), not noise


MASK_THRESHOLD = 127  # a mask pixel brighter than this is foreground (JPEG noise stays under)
# its range, declared once: the dataset option and a direct FolderDataset(...) call check it alike
MaskThreshold = Annotated[int, because(Range(0, 254), "a mask pixel counts above it")]


@dataclass(frozen=True)
class _Pair:
    name: str
    image_path: Path
    mask_bits: np.ndarray  # np.packbits of the thresholded H×W mask: ~1/8 of a bool array
    shape: tuple[int, int]  # (H, W) as displayed, like the mask

    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.mask_bits, count=h * w).reshape(h, w).astype(bool)


@settings("dataset")  # a call out of range is refused in the words of `dataset=folder`'s config
class FolderDataset(Dataset[Sample]):
    """One split of a folder dataset; one instance (K=1) per image."""

    def __init__(
        self,
        root: str,
        split: str,
        pipeline: Pipeline,
        mask_threshold: MaskThreshold = MASK_THRESHOLD,
        images_dir: str = "images",
        masks_dir: str = "masks",
        mask_suffix: str = "",
        image_suffix: str = "",
        role: str | None = None,  # train, val or test: names the split's key in refusals
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.pipeline = model_pipeline(pipeline)
        self.mask_threshold = mask_threshold
        self.skipped: list[tuple[str, str]] = []  # (name, why) for empty masks
        self.transform = None  # training augmentation, set by the runner on the train split only
        # "{split}" in a suffix is the split's name: DRIVE's `21_training.tif`, `01_test.tif`
        mask_suffix, image_suffix = (
            x.replace("{split}", split) for x in (mask_suffix, image_suffix)
        )
        found = find_pairs(
            self.root, split, images_dir, masks_dir, "mask", mask_suffix, image_suffix,
            MASK_EXTENSIONS, role=role,
        )  # fmt: skip
        self.unreadable = sorted(found.unreadable.items())  # (name, why): image or mask unopenable
        self.split_levels: list[tuple[str, list[int]]] = []  # (mask file, levels): see _levels
        self._empty: list[_Empty] = []
        self._pairs: list[_Pair] = []
        for name, (image_path, mask_path) in found.pairs.items():
            self._add(name, image_path, mask_path)
        self._warn_split_levels(found.where)
        why = self._why_empty()
        if not self._pairs:
            raise DatasetError(
                f"{found.where}: every mask is empty: {why}; nothing to train or evaluate on"
            )
        if why:
            logger.warning("%s: skipping %s", shown(found.where), why)

    def _add(self, name: str, image_path: Path, mask_path: Path) -> None:
        image_shape, orientation = image_header(image_path)
        gray = read_mask_gray(mask_path)
        turn = mask_orientation(image_path, image_shape, orientation, mask_path, gray.shape)
        # Strictly above a mid threshold: JPEG masks carry noise near 0 and 255.
        mask = apply_orientation(gray > self.mask_threshold, turn)
        levels = _levels(gray)
        if any(v <= self.mask_threshold for v in levels) and mask.any():
            self.split_levels.append((shown(mask_path), levels))
        if not mask.any():
            values = tuple(np.flatnonzero(np.bincount(gray.ravel(), minlength=256)[1:]) + 1)
            # a flat dim mask (0/1) or a grey level; a few noise values in a JPEG are no hint
            regions = (
                bool((gray[:, 1:] == gray[:, :-1]).mean() >= 0.5) if gray.shape[1] > 1 else True
            )
            self._empty.append(_Empty(mask_path, values, bool(levels) or len(values) == 1, regions))
            self.skipped.append((name, f"empty mask: no pixel above {self.mask_threshold}"))
            return
        self._pairs.append(_Pair(name, image_path, np.packbits(mask), mask.shape))

    def _why_empty(self) -> str:
        """One sentence for all the split's empty masks, grouped by what they hold, each group
        with the override that fixes it ('' when none is empty)."""
        t = self.mask_threshold
        black = [e.path for e in self._empty if not e.values]
        small = [e for e in self._empty if e.values and e.values[-1] <= _SMALL and e.regions]
        dim = [e for e in self._empty if e.values and e not in small]
        parts = []
        if small:
            paths = [e.path for e in small]
            ids = sorted({v for e in small for v in e.values})
            lossless = all(e.path.suffix.lower() not in _LOSSY for e in small)
            if lossless and len(ids) > 1:
                example = max(small, key=lambda e: len(e.values))
                parts.append(
                    f"{len(small)} hold only small values 0..{ids[-1]} (e.g. "
                    f"{shown(example.path.name)} holds 0, {', '.join(map(str, example.values))}): "
                    f"they look like class ids, "
                    f"not binary masks; for one object per class use dataset=labelmap (with a "
                    f"classes.txt of `id name` lines), or set dataset.mask_threshold=0 to make "
                    f"every non-zero pixel foreground"
                )
            else:
                parts.append(
                    f"{len(small)} hold only 0 and {', '.join(map(str, ids))} ({listing(paths)}): "
                    f"if that is foreground, set dataset.mask_threshold=0"
                )
        if dim:
            hinted = [e for e in dim if e.hinted]
            hint = ""
            if hinted:
                e = min(hinted, key=lambda e: e.values[-1])
                hint = (
                    f": e.g. {shown(e.path.name)}'s brightest value is {e.values[-1]}; if that is "
                    f"foreground, set dataset.mask_threshold={e.values[-1] // 2}"
                )
            brightest = max(e.values[-1] for e in dim)
            parts.append(
                f"{len(dim)} hold values up to {brightest} ({listing([e.path for e in dim])}){hint}"
            )
        if black:
            parts.append(f"{len(black)} are all black ({listing(black)})")
        if not parts:
            return ""
        return f"{len(self._empty)} mask(s) with no pixel above the threshold {t}: " + (
            "; ".join(parts)
        )

    def _warn_split_levels(self, split_dir: Path) -> None:
        """Once per split: masks whose non-black levels fall on both sides of the threshold
        (a {0, 127, 254} mask loses its 127 region to the background)."""
        if not self.split_levels:
            return
        path, levels = self.split_levels[0]
        low = [v for v in levels if v <= self.mask_threshold]
        logger.warning(
            "%s: %d mask(s) hold grey levels on both sides of dataset.mask_threshold=%d, e.g. %s "
            "holds %s: the %s region(s) count as background; if they are foreground, set "
            "dataset.mask_threshold=%d",
            shown(split_dir),
            len(self.split_levels),
            self.mask_threshold,
            path,
            ", ".join(map(str, levels)),
            ", ".join(map(str, low)),
            min(low) // 2,
        )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._pairs]

    @property
    def image_paths(self) -> list[Path]:
        return [p.image_path for p in self._pairs]

    def summary(self) -> dict[str, int]:
        """Counts for the run log: what was loaded and what was left out, and why."""
        return {
            "loaded": len(self._pairs),
            "skipped_empty_mask": len(self.skipped),
            "skipped_unreadable": len(self.unreadable),
        }

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> Sample:
        pair = self._pairs[index]
        image = read_image_rgb(pair.image_path, orient=True)
        return make_sample(
            pair.name,
            str(pair.image_path),
            image,
            pair.mask()[None],
            self.pipeline,
            transform=self.transform,
        )


def _levels(gray: np.ndarray) -> list[int]:
    """The mask's non-black grey levels, JPEG noise aside: values brighter than _NOISE that peak
    among their ±2 neighbours, which together hold at least _LEVEL_SHARE of the non-black pixels
    (a JPEG spreads a level over a few neighbouring values)."""
    counts = np.bincount(gray.ravel(), minlength=256)
    counts[: _NOISE + 1] = 0
    lit = counts.sum()
    padded = np.pad(counts, 2)
    near = np.lib.stride_tricks.sliding_window_view(padded, 5)  # near[v] = counts[v-2 : v+3]
    return [
        v
        for v in range(_NOISE + 1, 256)
        if counts[v] > 0 and counts[v] == near[v].max() and near[v].sum() >= _LEVEL_SHARE * lit
    ]


@option("dataset", "folder", provided=("pipeline",))
def folder_splits(
    name: str | None,  # in run names; null: the root folder's name
    root: str,
    pipeline: Pipeline,
    train_split: str = "train",  # ".": the root itself
    test_split: str | None = "test",  # null: held out of train by test_fraction
    val_split: str | None = None,
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    mask_threshold: MaskThreshold = MASK_THRESHOLD,
    # under each split's folder; with {split}, under the root: images/{split}, {split}annot
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "",  # mask stem = image stem (less image_suffix) + this, e.g. "_mask"
    image_suffix: str = "",  # cut off image stems before pairing; DRIVE: "_{split}" (_training)
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of one folder dataset (the `conf/dataset/*.yaml` target)."""

    roles = split_roles(train_split, val_split, test_split)

    def load(split: str) -> FolderDataset:
        return FolderDataset(
            root, split, pipeline, mask_threshold, images_dir, masks_dir, mask_suffix,
            image_suffix, roles.get(split),
        )  # fmt: skip

    return DatasetSplits.from_splits(dataset_name(name, root), load, train_split, test_split,
                                     val_split, limit, root, test_fraction)  # fmt: skip
