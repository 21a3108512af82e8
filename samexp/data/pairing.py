"""Which files of a split are images and which are their masks (or labels), and how they pair:
by stem, less an optional suffix on either side, in two folders or one, optionally only the stems
a split's list names. Where a split's folders are is `split_folders`' one rule. Shared by the
folder-shaped formats (folder, label maps); every problem is a one-line error naming the file
and the override, with the format's own key names (`dataset.masks_dir`, `dataset.labels_dir`).
"""

from __future__ import annotations

import io
import logging
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from samexp.config.errors import DatasetError, first_few
from samexp.data.base import IMAGE_EXTENSIONS, imread_unchanged, to_uint8
from samexp.data.files import link_problem, read_image_bytes, shown
from samexp.data.split_folders import (
    SPLIT,
    StemList,
    read_stem_list,
    require_folder,
    require_split,
    split_folder,
)
from samexp.data.splits import require_dataset_root

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # how many offending files an error message names before "and N more"
# GIF masks (DRIVE's `NN_manual1.gif`) are read with PIL: OpenCV cannot decode GIF.
MASK_EXTENSIONS = IMAGE_EXTENSIONS | {".gif"}


def listing(paths: list[Path]) -> str:
    """The first few file names, then "and N more": error messages stay one readable line."""
    return first_few([shown(p.name) for p in sorted(paths)], _MAX_LISTED)


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
    if array.dtype == np.uint16 and array.max() <= 255:
        # ids or 0/1 saved 16-bit (TIFF masks): scaling to 8 bits would make them all 0
        array = array.astype(np.uint8)
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


@dataclass(frozen=True)
class Pairs:
    """What `find_pairs` found for one split."""

    where: Path  # what messages name the split by: its folder, or its images' folder
    images_dir: Path
    others_dir: Path  # the masks' or labels' folder
    pairs: dict[str, tuple[Path, Path]]  # name -> (image, mask)
    unreadable: dict[str, str]  # name -> why it is left out


def find_pairs(
    root: Path,
    split: str,
    images_dir: str,
    masks_dir: str,
    kind: str = "mask",
    mask_suffix: str = "",
    image_suffix: str = "",
    mask_extensions: frozenset[str] = IMAGE_EXTENSIONS,
    split_list: str | None = None,
    role: str | None = None,
) -> Pairs:
    """name -> (image, mask) for every image of a split, and name -> why for names left out.

    Folders follow `split_folder`; with `split_list` (a `{split}` template of a list file) the
    split is the names it lists, the other files of the folders are not used, and a listed name
    without its files is an error. A name is the image's stem without `image_suffix`, and the
    mask's without `mask_suffix`. Any unpaired file is an error; a name whose image or mask
    cannot be opened (see `index_images`) is left out. `kind` names the second side in messages
    and keys ("mask": `dataset.masks_dir`, `dataset.mask_suffix`; "label": `labels_dir`, ...);
    `role` (train, val, test) names the split's key.
    """
    root = require_dataset_root(root)
    listed = read_stem_list(split_folder(root, split, split_list), role) if split_list else None
    in_folder = listed is None and not all(SPLIT in t for t in (images_dir, masks_dir))
    if in_folder:
        require_split(root, split, role, kind)
    images_path = split_folder(root, split, images_dir, listed is None)
    masks_path = split_folder(root, split, masks_dir, listed is None)
    require_folder(images_path, root, "image")
    require_folder(masks_path, root, kind)
    if images_path.resolve() == masks_path.resolve():
        image_index, mask_index = _one_folder(images_path, kind, mask_suffix, mask_extensions)
    else:
        image_index = index_images(images_path, "image")
        mask_index = _cut_suffix(
            index_images(masks_path, kind, mask_extensions), masks_path, kind, kind, mask_suffix
        )
    image_index = _cut_suffix(image_index, images_path, "image", "image", image_suffix)
    if listed is not None:
        image_index, mask_index = _only_listed(listed, image_index, images_path, mask_index,
                                               masks_path, kind)  # fmt: skip
    images = image_index.files
    if not images:
        raise DatasetError(
            f"{images_path} holds no image files "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or fix dataset.images_dir"
        )
    masks = mask_index.files
    unreadable = {**mask_index.unreadable, **image_index.unreadable}
    lonely_images = sorted(images.keys() - masks.keys() - unreadable.keys())
    if lonely_images:
        named = (
            f"named <name>{mask_suffix}.<ext> (dataset.{kind}_suffix='{mask_suffix}')"
            if mask_suffix
            else "with the same name"
        )
        raise DatasetError(
            f"{len(lonely_images)} image(s) have no {kind} {named} in {masks_path}: "
            f"{listing([images[n] for n in lonely_images])}; add the {kind}s or remove the "
            f"images{_suffix_hint(lonely_images, list(masks), kind, mask_suffix)}"
        )
    lonely_masks = [masks[n] for n in masks.keys() - images.keys() - unreadable.keys()]
    if lonely_masks:
        raise DatasetError(
            f"{len(lonely_masks)} {kind}(s) have no image with the same name in {images_path}: "
            f"{listing(lonely_masks)}; add the images or remove the {kind}s"
        )
    usable = sorted(images.keys() - unreadable.keys())
    return Pairs(
        root / split if in_folder else images_path, images_path, masks_path,
        {name: (images[name], masks[name]) for name in usable}, unreadable,
    )  # fmt: skip


def _suffix_hint(lonely: list[str], others: list[str], kind: str, suffix: str) -> str:
    """`; ... set dataset.mask_suffix=_mask` when the other side's names are the lonely images'
    names plus one suffix (bisect over sorted names: fast on big folders)."""
    ordered = sorted(others)
    found: Counter[str] = Counter()
    for name in lonely:
        i = bisect_left(ordered, name)
        if i < len(ordered) and ordered[i].startswith(name) and ordered[i] != name:
            found[ordered[i][len(name) :]] += 1
    if not found:
        return ""
    extra, count = found.most_common(1)[0]
    return (
        f"; {count} of them have a {kind} named <name>{extra}: set "
        f"dataset.{kind}_suffix={suffix + extra}"
    )


def _only_listed(
    listed: StemList, images: FileIndex, images_path: Path, masks: FileIndex, masks_path: Path,
    kind: str,
) -> tuple[FileIndex, FileIndex]:  # fmt: skip
    """Both sides cut to the names the split's list holds (VOC's JPEGImages has many images
    without labels); a listed name whose image or mask is missing is an error naming it."""
    for side, index, folder in (("image", images, images_path), (kind, masks, masks_path)):
        missing = [s for s in listed.stems if s not in index.files and s not in index.unreadable]
        if missing:
            raise DatasetError(
                f"{listed.path} lists {len(missing)} name(s) with no {side} in {folder}: "
                f"{listing([Path(s) for s in missing])}; add the files or remove the names from "
                f"the list"
            )
    keep = set(listed.stems)

    def cut(index: FileIndex) -> FileIndex:
        return FileIndex(
            {s: p for s, p in index.files.items() if s in keep},
            {s: w for s, w in index.unreadable.items() if s in keep},
        )

    unused = len(images.files) - len(keep)
    if unused > 0:
        logger.info(
            "%s: using the %d image(s) it lists; %d other image(s) in %s are not in this split",
            shown(listed.path), len(keep), unused, shown(images_path),
        )  # fmt: skip
    return cut(images), cut(masks)


def _one_folder(
    folder: Path, kind: str, mask_suffix: str, extensions: frozenset[str]
) -> tuple[FileIndex, FileIndex]:
    """Images and masks side by side (Roboflow's `x.jpg` + `x_mask.png`): the suffix tells them
    apart; the masks' stems come back without it."""
    if not mask_suffix:
        raise DatasetError(
            f"images and {kind}s are both read from {folder}; set dataset.{kind}_suffix "
            f"(e.g. dataset.{kind}_suffix=_mask) to tell {kind}s from images, or point "
            f"dataset.{kind}s_dir at another folder"
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
            f"{folder}: {listing(not_images)} do not end in dataset.{kind}_suffix='{mask_suffix}' "
            f"and cannot be images ({', '.join(sorted(IMAGE_EXTENSIONS))}); rename or remove them"
        )
    return images, _cut_suffix(side(True), folder, kind, kind, mask_suffix)


def _cut_suffix(index: FileIndex, folder: Path, kind: str, side: str, suffix: str) -> FileIndex:
    """`index` keyed by stems without `suffix` (`dataset.<side>_suffix`); a file whose stem
    lacks it is an error."""
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
