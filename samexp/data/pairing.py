"""Which files of a split are images and which are their masks (or labels), and how they pair:
by stem, less an optional suffix on either side, in two folders or one. Shared by the folder-shaped
formats (folder, label maps); every problem is a one-line error naming the file.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from samexp.data.base import IMAGE_EXTENSIONS, imread_unchanged, to_uint8
from samexp.data.files import link_problem, read_image_bytes, shown
from samexp.data.splits import require_dataset_root
from samexp.errors import DatasetError

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # how many offending files an error message names before "and N more"
# GIF masks (DRIVE's `NN_manual1.gif`) are read with PIL: OpenCV cannot decode GIF.
MASK_EXTENSIONS = IMAGE_EXTENSIONS | {".gif"}


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
