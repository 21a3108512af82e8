"""The names a split folder goes by: tools name one split differently (Roboflow's `valid`,
ADE20K's `training`, a Kaggle set's `dev`), and the split `.` is the dataset root itself; and
which found folder is evaluated when a dataset has a val folder but no test folder."""

from __future__ import annotations

import logging
from pathlib import Path

from samexp.data.files import shown

logger = logging.getLogger(__name__)

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


def split_folder(base: Path, template: str, split: str) -> Path:
    """The folder a `{split}` template names for `split` (`images/{split}` -> images/val), or
    without the placeholder the old rule, `<split>/<template>` (val/images)."""
    if "{split}" in template:
        return base / template.replace("{split}", split)
    return base / split / template


def subfolders(folder: Path) -> list[str]:
    """The sub-folder names of `folder` (what a refusal lists as existing), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


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
