"""Where a split's files are and what its folder is called, for every format: the names a split
goes by (tools name one split differently: Roboflow's `valid`, ADE20K's `training`, a Kaggle set's
`dev`; `.` is the dataset root itself), one folder rule (`split_folder`: `{split}` templates), a
split given as a list of names (VOC, CVAT), which found folder is evaluated when a dataset has a val
folder but no test folder, and the refusals for what is missing: they list what exists, never call
ordinary folders splits, and name the key that fixes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from samexp.config.errors import DatasetError
from samexp.config.limits import read_lines
from samexp.data.files import shown

logger = logging.getLogger(__name__)

SPLIT = "{split}"  # in a folder template: the split's name
ROOT_SPLIT = "."  # no split folder: the root holds the images
SPLIT_ALIASES = (
    ("train", "training"),
    ("val", "valid", "validation", "dev"),
    ("test", "testing"),
)


def split_of(name: str) -> str | None:
    """`train`, `val` or `test` for a folder or file name that names that split, in any case
    (ISIC's `Training`, CVAT's `Test`), else None: how layout detection reads names."""
    lowered = name.lower()
    return next((names[0] for names in SPLIT_ALIASES if lowered in names), None)


def split_candidates(split: str) -> tuple[str, ...]:
    """`split`, then the other names of the same split in the order tools use them
    (`val` -> val, valid, validation, dev); a name of no known split stands alone."""
    for names in SPLIT_ALIASES:
        if split in names:
            return (split, *(n for n in names if n != split))
    return (split,)


def split_folder(root: Path, split: str, template: str, split_is_folder: bool = True) -> Path:
    """Where `template` (`dataset.images_dir`, `masks_dir`, `labels_dir`, `split_files`) points for
    `split`: the one rule of every folder-shaped format.

    With `{split}` it is a path under the root, the split's name in place of `{split}`
    (`images/{split}`, CamVid's `{split}annot`); without it, `<root>/<split>/<template>` as it
    always was, or `<root>/<template>` when a split is a list of names, not a folder. Split `.`
    is the root itself.
    """
    if SPLIT in template:
        return root / template.replace(SPLIT, split)
    return root / split / template if split_is_folder else root / template


def subfolders(folder: Path) -> list[str]:
    """The sub-folder names of `folder` (what a refusal lists as existing), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folders_in(folder: Path) -> list[str]:
    return [shown(name) for name in subfolders(folder)]


def _layout_example(folders: list[str], kind: str) -> str:
    """` dataset.images_dir=JPEGImages dataset.labels_dir=SegmentationClass`, guessed from folder
    names for a refusal's example (empty when the names suggest nothing)."""
    images = next((f for f in folders if "im" in f.lower()), None)
    if images is None:
        return ""
    others = next((f for f in folders if f != images), None)
    return f" dataset.images_dir={images}" + (f" dataset.{kind}s_dir={others}" if others else "")


def _split_key(role: str | None, unnamed: str) -> tuple[str, str]:
    """The key a refusal names for a split of `role` (`unnamed` without one), and the
    ` (or <key>=null)` alternative a val or test split has."""
    key = f"dataset.{role}_split" if role else unnamed
    return key, f" (or {key}=null)" if role in ("val", "test") else ""


def require_split(root: Path, split: str, role: str | None, kind: str) -> None:
    """The split's folder exists, or a refusal listing the root's folders without calling them
    splits, and the overrides for both readings: they are splits, or they are not."""
    if (root / split).is_dir():
        return
    folders = _folders_in(root)
    key, drop = _split_key(role, "dataset.train_split (or val_split, test_split)")
    raise DatasetError(
        f"split '{split}' not found: {root / split} does not exist; folders in {root}: "
        f"{', '.join(folders) or 'none'}; if one of them is this split, set {key}=<its name>"
        f"{drop}; "
        f"if the files are not in split folders, set dataset.train_split=. (the root itself) "
        f"dataset.test_split=null{_layout_example(folders, kind)}; or write where each split is "
        f"with {SPLIT}, e.g. dataset.images_dir=images/{SPLIT}"
    )


def require_folder(path: Path, root: Path, kind: str) -> None:
    """An image/mask/label folder exists, or a refusal listing what its nearest existing parent
    holds and naming the key that points elsewhere (`dataset.<kind>s_dir`)."""
    if path.is_dir():
        return
    near = path.parent
    while not near.is_dir() and near != root and near != near.parent:
        near = near.parent
    folders = _folders_in(near) if near.is_dir() else []
    raise DatasetError(
        f"{kind} folder {path} does not exist; folders in {near}: {', '.join(folders) or 'none'}; "
        f"set dataset.{kind}s_dir to the folder holding the {kind}s (under each split's folder, or "
        f"under the root with {SPLIT} for the split's name: dataset.{kind}s_dir={kind}s/{SPLIT})"
    )


def split_roles(train: str, val: str | None, test: str | None) -> dict[str, str]:
    """split name -> its role (train, val, test): what names the key in a missing split's
    refusal (`dataset.test_split`)."""
    return {name: role for role, name in (("val", val), ("test", test), ("train", train)) if name}


@dataclass(frozen=True)
class StemList:
    """A split given as a list of names (VOC's `ImageSets/Segmentation/train.txt`)."""

    path: Path
    stems: tuple[str, ...]


def read_stem_list(path: Path, role: str | None = None) -> StemList:
    """The names a split's list file holds, one per line (a line's first word: VOC's
    `ImageSets/Main` lines carry a flag after it); blank lines are skipped."""
    if not path.is_file():
        lists = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        key, drop = _split_key(role, "the split's name")
        raise DatasetError(
            f"split list {path} does not exist; lists in {path.parent}: "
            f"{', '.join(lists) or 'none'}; set {key} to one of them{drop}, or fix "
            f"dataset.split_files"
        )
    lines = read_lines(path)
    stems = dict.fromkeys(line.split()[0] for line in lines if line.strip())  # ordered, unique
    if not stems:
        raise DatasetError(f"split list {path} names no image; list one file name per line")
    return StemList(path, tuple(stems))


def evaluated_splits(name: str, val: Path | None, test: Path | None, test_split: str | None,
                     test_fraction: float | None) -> tuple[Path | None, Path | None]:  # fmt: skip
    """(val, test) folders as every format reads them. A val folder that is the test folder is
    the test split (`test_split=valid` while `val_split=val` finds `valid/` too). With a val but no
    test folder, val is the test split (a published val split is the one scores are compared on)
    and validation is carved from train, unless `test_split=null` or a `test_fraction` asks for a
    test split held out of train (`DatasetSplits.assemble`: test None)."""
    if val is not None and test is not None and val.resolve() == test.resolve():
        return None, test
    if test is None and val is not None and test_split is not None and test_fraction is None:
        logger.info(
            "%s: no %s split, so its val split %s is the test split (what is evaluated); "
            "dataset.test_split=null holds a test split out of train instead and keeps val for "
            "validation", name, test_split, shown(val),
        )  # fmt: skip
        return None, val
    return val, test
