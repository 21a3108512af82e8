"""The folder format: `<root>/<split>/images/<name>.<ext>` paired by stem with `<split>/masks/<name>.<ext>`.

Annotation tools name masks after their image with a suffix (`x_mask.png`, `x_segmentation.png`,
`21_manual1.gif` for `21_training.tif`), sometimes in the images' own folder: `mask_suffix` and
`image_suffix` are cut off the stems before pairing, and a masks folder equal to the images folder
tells masks from images by the mask suffix.

Everything that can be wrong with the files is found at construction, so a bad dataset stops
the run before any model is built, with a message naming the file. Images are used as displayed
(EXIF orientation applied); a mask drawn on the stored pixels is turned with its image.
The file-indexing helpers here serve the other folder-shaped formats too (label maps).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from samexp.checks import Range, because
from samexp.data.base import (
    IMAGE_EXTENSIONS,
    Sample,
    imread_unchanged,
    make_sample,
    read_image_rgb,
    to_uint8,
)
from samexp.data.files import link_problem, read_image_bytes, shown
from samexp.data.orientation import apply_orientation, image_header, mask_orientation
from samexp.data.splits import DatasetSplits, TrainLimit, dataset_name, require_dataset_root
from samexp.errors import DatasetError
from samexp.options import option

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # how many offending files an error message names before "and N more"
# GIF masks (DRIVE's `NN_manual1.gif`) are read with PIL: OpenCV cannot decode GIF.
MASK_EXTENSIONS = IMAGE_EXTENSIONS | {".gif"}
# A mask value is a level (not JPEG noise) when it is brighter than _NOISE and at least
# _LEVEL_SHARE of the mask's non-black pixels hold it; the rings' JPEG masks stay under 0.2%.
_NOISE = 16
_LEVEL_SHARE = 0.02


@dataclass(frozen=True)
class _Pair:
    name: str
    image_path: Path
    mask_bits: np.ndarray  # np.packbits of the thresholded H×W mask: ~1/8 of a bool array
    shape: tuple[int, int]  # (H, W) as displayed, like the mask

    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.mask_bits, count=h * w).reshape(h, w).astype(bool)


def listing(paths: list[Path]) -> str:
    """The first few file names, then "and N more": error messages stay one readable line."""
    names = ", ".join(shown(p.name) for p in sorted(paths)[:_MAX_LISTED])
    more = len(paths) - _MAX_LISTED
    return names + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class FileIndex:
    """The image files of a folder by stem, and the image names that cannot be opened, and why.

    Stems are printable (`shown`): they become sample names, which end up in logs and MLflow.
    """

    files: dict[str, Path]
    unreadable: dict[str, str]  # stem -> "<kind> <file name>: <why>", e.g. a symlink loop


def index_images(
    folder: Path, kind: str, extensions: frozenset[str] = IMAGE_EXTENSIONS
) -> FileIndex:
    """Index the image files in `folder`; duplicate stems are an error, not a guess.

    Symlink loops and broken symlinks are skipped with a warning naming them: a link pointing
    nowhere holds no data to check, unlike a truncated file, which stops the run.
    """
    if not folder.is_dir():
        raise DatasetError(f"{kind} folder {folder} does not exist; create it or fix the path")
    by_stem: dict[str, list[Path]] = {}
    ignored = []
    unreadable: dict[str, str] = {}
    for path in sorted(folder.iterdir()):  # sorted: warnings in a stable order
        if path.name.startswith("."):
            continue
        is_image = path.suffix.lower() in extensions
        problem = link_problem(path) if is_image else None
        if problem is not None:
            logger.warning("%s: skipping %s: %s", shown(folder), shown(path.name), problem)
            unreadable[shown(path.stem)] = f"{kind} {shown(path.name)}: {problem}"
        elif not path.is_file():
            continue
        elif is_image:
            by_stem.setdefault(shown(path.stem), []).append(path)
        else:
            ignored.append(path)
    if ignored:
        logger.warning(
            "%s: ignoring %d non-image files: %s", shown(folder), len(ignored), listing(ignored)
        )
    duplicates = sorted(p for paths in by_stem.values() if len(paths) > 1 for p in paths)
    if duplicates:
        raise DatasetError(
            f"{folder}: several {kind} files share a name and differ only by extension "
            f"({listing(duplicates)}); keep one file per name"
        )
    return FileIndex({stem: paths[0] for stem, paths in by_stem.items()}, unreadable)


def read_mask_gray(path: Path) -> np.ndarray:
    """H×W uint8; colour masks collapse by max over channels (any non-black colour counts)."""
    array = _read_gif(path) if path.suffix.lower() == ".gif" else imread_unchanged(path)
    array = to_uint8(array, path)
    if array.ndim == 3:
        array = array[..., :3].max(axis=2)  # alpha dropped, as for images
    return array


def _read_gif(path: Path) -> np.ndarray:
    """The first frame as H×W×3 RGB (a palette's colours, as a PNG's would be)."""
    try:
        with Image.open(io.BytesIO(read_image_bytes(path))) as image:
            return np.asarray(image.convert("RGB"))
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises several types for bad files; all mean "unreadable"
        raise DatasetError(f"{shown(path)}: cannot be read as an image ({exc})") from exc


def _split_dir(root: Path, split: str) -> Path:
    require_dataset_root(root)
    split_dir = root / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetError(
            f"split '{split}' not found: {split_dir} does not exist; "
            f"splits in {root}: {', '.join(found) or 'none'}"
        )
    return split_dir


def find_pairs(
    root: Path,
    split: str,
    images_dir: str,
    masks_dir: str,
    kind: str = "mask",
    mask_suffix: str = "",
    image_suffix: str = "",
    mask_extensions: frozenset[str] = IMAGE_EXTENSIONS,
) -> tuple[Path, dict[str, tuple[Path, Path]], dict[str, str]]:
    """The split folder, name -> (image, mask) for every image, and name -> why for names left out.

    A name is the image's stem without `image_suffix`, and the mask's without `mask_suffix`.
    Any unpaired file is an error; a name whose image or mask cannot be opened (see
    `index_images`) is left out. `kind` names the second side in messages ("mask", "label").
    """
    split_dir = _split_dir(root, split)
    images_path, masks_path = split_dir / images_dir, split_dir / masks_dir
    if images_path.resolve() == masks_path.resolve():
        image_index, mask_index = _one_folder(images_path, kind, mask_suffix, mask_extensions)
    else:
        image_index = index_images(images_path, "image")
        mask_index = _cut_suffix(
            index_images(masks_path, kind, mask_extensions), masks_path, kind, "mask", mask_suffix
        )
    image_index = _cut_suffix(image_index, images_path, "image", "image", image_suffix)
    images = image_index.files
    if not images:
        raise DatasetError(
            f"{images_path} holds no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or fix the path"
        )
    masks = mask_index.files
    unreadable = {**mask_index.unreadable, **image_index.unreadable}
    lonely_images = [images[n] for n in images.keys() - masks.keys() - unreadable.keys()]
    if lonely_images:
        named = f"named <name>{mask_suffix}.<ext> (dataset.mask_suffix='{mask_suffix}')"
        raise DatasetError(
            f"{len(lonely_images)} image(s) have no {kind} "
            f"{named if mask_suffix else 'with the same name'} in {masks_path}: "
            f"{listing(lonely_images)}; add the {kind}s or remove the images"
        )
    lonely_masks = [masks[n] for n in masks.keys() - images.keys() - unreadable.keys()]
    if lonely_masks:
        raise DatasetError(
            f"{len(lonely_masks)} {kind}(s) have no image with the same name in {images_path}: "
            f"{listing(lonely_masks)}; add the images or remove the {kind}s"
        )
    usable = sorted(images.keys() - unreadable.keys())
    return split_dir, {name: (images[name], masks[name]) for name in usable}, unreadable


def _one_folder(
    folder: Path, kind: str, mask_suffix: str, extensions: frozenset[str]
) -> tuple[FileIndex, FileIndex]:
    """Images and masks side by side (Roboflow's `x.jpg` + `x_mask.png`): the suffix tells them
    apart; the masks' stems come back without it."""
    if not mask_suffix:
        raise DatasetError(
            f"images and {kind}s are both read from {folder}; set dataset.mask_suffix "
            f"(e.g. dataset.mask_suffix=_mask) to tell {kind}s from images, or point "
            f"dataset.masks_dir at another folder"
        )
    index = index_images(folder, f"image or {kind}", extensions)

    def side(is_mask: bool) -> FileIndex:
        return FileIndex(
            {s: p for s, p in index.files.items() if s.endswith(mask_suffix) == is_mask},
            {s: w for s, w in index.unreadable.items() if s.endswith(mask_suffix) == is_mask},
        )

    images = side(False)
    not_images = [p for p in images.files.values() if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if not_images:
        raise DatasetError(
            f"{folder}: {listing(not_images)} do not end in dataset.mask_suffix='{mask_suffix}' "
            f"and cannot be images ({', '.join(sorted(IMAGE_EXTENSIONS))}); rename or remove them"
        )
    return images, _cut_suffix(side(True), folder, kind, "mask", mask_suffix)


def _cut_suffix(index: FileIndex, folder: Path, kind: str, side: str, suffix: str) -> FileIndex:
    """`index` keyed by stems without `suffix`; a file whose stem lacks it is an error."""
    if not suffix:
        return index
    lacking = [p for s, p in index.files.items() if not s.endswith(suffix) or s == suffix]
    if lacking:
        raise DatasetError(
            f"{len(lacking)} {kind} file(s) in {folder} do not end in "
            f"dataset.{side}_suffix='{suffix}': {listing(lacking)}; rename or remove them, "
            f"or change dataset.{side}_suffix"
        )

    def cut(stem: str) -> str:
        return stem[: -len(suffix)] if stem.endswith(suffix) else stem

    return FileIndex(
        {cut(s): p for s, p in index.files.items()},
        {cut(s): why for s, why in index.unreadable.items()},
    )


class FolderDataset(Dataset[Sample]):
    """One split of a folder dataset; one instance (K=1) per image."""

    def __init__(
        self,
        root: str,
        split: str,
        img_size: int,
        mask_threshold: Annotated[
            int, because(Range(0, 254), "a mask pixel counts above it")
        ] = 127,
        images_dir: str = "images",
        masks_dir: str = "masks",
        mask_suffix: str = "",
        image_suffix: str = "",
    ) -> None:
        if not 0 <= mask_threshold < 255:
            raise DatasetError(f"mask_threshold must be in [0, 254], got {mask_threshold}")
        if img_size <= 0:
            raise DatasetError(f"img_size must be positive, got {img_size}")
        self.root = Path(root)
        self.split = split
        self.img_size = img_size
        self.mask_threshold = mask_threshold
        self.skipped: list[tuple[str, str]] = []  # (name, why) for empty masks
        self.transform = None  # training augmentation, set by the runner on the train split only
        # "{split}" in a suffix is the split's name: DRIVE's `21_training.tif`, `01_test.tif`
        mask_suffix, image_suffix = (
            x.replace("{split}", split) for x in (mask_suffix, image_suffix)
        )
        split_dir, pairs, unreadable = find_pairs(
            self.root, split, images_dir, masks_dir, "mask", mask_suffix, image_suffix,
            MASK_EXTENSIONS,
        )  # fmt: skip
        self.unreadable = sorted(unreadable.items())  # (name, why): an image or mask unopenable
        self.split_levels: list[tuple[str, list[int]]] = []  # (mask file, levels): see _levels
        self._pairs: list[_Pair] = []
        for name, (image_path, mask_path) in pairs.items():
            self._add(name, image_path, mask_path)
        self._warn_split_levels(split_dir)
        if not self._pairs:
            raise DatasetError(f"{split_dir}: every mask is empty; nothing to train or evaluate on")

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
            brightest = int(gray.max())
            # a flat dim mask (0/1) or a grey level; a few noise values in a JPEG are no hint
            flat = len(np.unique(gray[gray > 0])) == 1
            hint = (
                f" (its brightest value is {brightest}; if that is foreground, set "
                f"dataset.mask_threshold={brightest // 2})"
                if levels or flat
                else ""
            )
            logger.warning(
                "%s: no pixel above %d, skipping this empty mask%s",
                shown(mask_path),
                self.mask_threshold,
                hint,
            )
            self.skipped.append((name, f"empty mask: no pixel above {self.mask_threshold}"))
            return
        self._pairs.append(_Pair(name, image_path, np.packbits(mask), mask.shape))

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
            self.img_size,
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


@option("dataset", "folder", provided=("img_size",))
def folder_splits(
    name: str | None,  # in run names; null: the root folder's name
    root: str,
    img_size: int,
    train_split: str = "train",
    test_split: str = "test",
    val_split: str | None = None,
    mask_threshold: Annotated[int, because(Range(0, 254), "a mask pixel counts above it")] = 127,
    images_dir: str = "images",
    masks_dir: str = "masks",
    mask_suffix: str = "",  # mask stem = image stem (less image_suffix) + this, e.g. "_mask"
    image_suffix: str = "",  # cut off image stems before pairing; DRIVE: "_{split}" (_training)
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of one folder dataset (the `conf/dataset/*.yaml` target)."""

    def load(split: str) -> FolderDataset:
        return FolderDataset(
            root, split, img_size, mask_threshold, images_dir, masks_dir, mask_suffix, image_suffix
        )

    return DatasetSplits.from_splits(
        dataset_name(name, root), load, train_split, test_split, val_split, limit
    )
