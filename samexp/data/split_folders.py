"""Where a split's files are, by one rule for every folder-shaped format (`split_folder`:
`{split}` templates, split `.` = the root), a split given as a list of names (VOC, CVAT), and the
refusals for what is missing: they list what exists, never call ordinary folders splits, and
name the key that fixes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samexp.data.files import shown
from samexp.errors import DatasetError
from samexp.limits import read_lines

SPLIT = "{split}"  # in a folder template: the split's name


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


def _folders_in(folder: Path) -> list[str]:
    return sorted(
        shown(p.name) for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def _layout_example(folders: list[str], kind: str) -> str:
    """` dataset.images_dir=JPEGImages dataset.labels_dir=SegmentationClass`, guessed from folder
    names for a refusal's example (empty when the names suggest nothing)."""
    images = next((f for f in folders if "im" in f.lower()), None)
    if images is None:
        return ""
    others = next((f for f in folders if f != images), None)
    return f" dataset.images_dir={images}" + (f" dataset.{kind}s_dir={others}" if others else "")


def require_split(root: Path, split: str, role: str | None, kind: str) -> None:
    """The split's folder exists, or a refusal listing the root's folders without calling them
    splits, and the overrides for both readings: they are splits, or they are not."""
    if (root / split).is_dir():
        return
    folders = _folders_in(root)
    key = f"dataset.{role}_split" if role else "dataset.train_split (or val_split, test_split)"
    drop = f" (or {key}=null)" if role in ("val", "test") else ""
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
        key = f"dataset.{role}_split" if role else "the split's name"
        drop = f" (or {key}=null)" if role in ("val", "test") else ""
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
