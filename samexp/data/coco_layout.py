"""Where a COCO dataset's files are: the layout is found from the files under the root, so the
exports of the usual annotation tools load without overrides. The one place that finds them.

  pre-split  <root>/<split>/annotations.json (+ <split>/images/) per split, any split names
             (train/training, val/valid/validation/dev, test/testing)
  roboflow   <root>/{train,valid,test}/_annotations.coco.json beside the images
  single     one COCO json at the root under any name (annotations.json, dataset.json,
             result.json ...), file_names relative to images/ or the root (labelme's
             JPEGImages/...); several (labelme2coco's train.json + val.json): a split each, by name
  cvat       <root>/annotations/instances_<subset>.json + <root>/images/ (or images/<subset>/),
             a split per subset by name (instances_default: the only one, or train)
  template   dataset.annotations=annotations/instances_{split}.json: one file per split name
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from samexp.config.errors import DatasetError, first_few
from samexp.data.detect.jsonhead import json_kind
from samexp.data.files import shown
from samexp.data.held_out import relative_key
from samexp.data.split_folders import ROOT_SPLIT, evaluated_splits, split_candidates, subfolders

logger = logging.getLogger(__name__)

ROBOFLOW_FILE = "_annotations.coco.json"  # Roboflow's name, in every split folder
DEFAULT_FILE = "annotations.json"  # the usual name in a split folder
ANNOTATIONS_DIR = "annotations"  # CVAT's (and COCO's own) folder of instances_<subset>.json
CVAT_PREFIX = "instances_"
DEFAULT_SUBSET = "default"  # CVAT's subset when the task has none: the train split
ROLES = ("train", "val", "test")
_LISTED = 8  # names a refusal lists before "and N more"


@dataclass(frozen=True)
class CocoFile:
    """One annotations file, the folder its `file_name`s are first looked up in, and the name
    its split goes by in the files (`valid`, `default`, `train2017`)."""

    annotations: Path
    images_dir: Path
    split: str = ROOT_SPLIT


@dataclass(frozen=True)
class CocoLayout:
    kind: str  # pre-split, roboflow, single, cvat, template: for the log line
    train: CocoFile  # with no test file, the test split is held out of it
    val: CocoFile | None = None  # the dataset's own val split (else carved from train)
    test: CocoFile | None = None  # None: held out of train (dataset.test_fraction)
    notes: tuple[str, ...] = ()  # files found but not used as found, and why (logged)

    def describe(self, base: Path) -> str:
        """`train: annotations/instances_train.json (images/train), ...`: which file is which."""

        def one(role: str) -> str:
            file = getattr(self, role)
            if file is None:
                return f"{role}: held out of train" if role == "test" else f"{role}: none"
            images = relative_key(file.images_dir, base) if file.images_dir.is_dir() else "."
            return f"{role}: {relative_key(file.annotations, base)} (images: {images})"

        return "; ".join(one(role) for role in ROLES)


def coco_files(folder: Path) -> list[Path]:
    """The COCO files directly in `folder`, any name, sorted: told from other JSON (LabelMe's,
    one per image) by their head alone (`json_kind`); a false yes is refused when the file is
    read whole (`coco_json`), naming it."""
    if not folder.is_dir():
        return []
    jsons = (p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    return sorted(p for p in jsons if json_kind(p) == "coco")


def _listed(paths: list[Path], base: Path) -> str:
    return first_few(sorted(relative_key(p, base) for p in paths), _LISTED) or "none"


def _names(train: str, val: str | None, test: str | None) -> dict[str, tuple[str, ...]]:
    """Role -> the names its split goes by, the configured one first, never a name configured
    for a role before it in train, test, val (test_split=val with the default val_split=val:
    val.json is the test file). A test file is found even with test_split=null, so that not
    using it is said, not silent."""
    given = {"train": train, "test": test, "val": val}
    names: dict[str, tuple[str, ...]] = {}
    for role, name in given.items():
        before = {given[r] for r in names}
        names[role] = tuple(n for n in split_candidates(name or role) if n not in before)
    return {role: names[role] for role in ROLES}


def _subset(path: Path) -> str:
    """The split a file is named for: `instances_train2017.json` -> train2017, `val.json` -> val."""
    return path.stem.removeprefix(CVAT_PREFIX)


def _roles_of(path: Path, names: dict[str, tuple[str, ...]]) -> set[str]:
    """The roles whose names the file's name holds, as a word (`instances_val2017`: val)."""
    subset = _subset(path).lower()
    words = {w for w in re.split(r"[^a-z]+", subset) if w} | {subset}
    found = {role for role, aliases in names.items() if words & {a.lower() for a in aliases}}
    if not found and DEFAULT_SUBSET in words:
        found = {DEFAULT_SUBSET}
    return found


def _override(path: Path, base: Path) -> str:
    return f"dataset.annotations={relative_key(path, base)}"


def _by_name(files: list[Path], names: dict[str, tuple[str, ...]], base: Path
             ) -> dict[str, Path]:  # fmt: skip
    """Several COCO files in one folder, each the split its name says; a file that names no
    split (or several), or two files for one split, are refused naming the override."""
    by_role: dict[str, list[Path]] = {}
    unknown = []
    for path in files:
        roles = _roles_of(path, names)
        if len(roles) == 1:
            by_role.setdefault(roles.pop(), []).append(path)
        else:
            unknown.append(path)
    default = by_role.pop(DEFAULT_SUBSET, [])
    if default and "train" not in by_role:
        by_role["train"] = default
    else:
        unknown += default
    folder = shown(files[0].parent)
    if unknown:
        known = ", ".join("/".join(n) for n in names.values())
        raise DatasetError(
            f"{folder} holds {len(files)} COCO files and {_listed(unknown, base)} names no split "
            f"samexp knows ({known}); use that file alone with {_override(unknown[0], base)}, "
            f"or name its split with dataset.train_split=/val_split=/test_split="
            f"{_subset(unknown[0])}"
        )
    for role, paths in by_role.items():
        if len(paths) > 1:
            raise DatasetError(
                f"{folder} holds {len(paths)} COCO files for the {role} split: "
                f"{_listed(paths, base)}; choose one with {_override(paths[0], base)}"
            )
    return {role: paths[0] for role, paths in by_role.items()}


def _in_split_folder(folder: Path, annotations: str | None) -> Path | None:
    """A split folder's file: `annotations` when named, else Roboflow's, annotations.json, or
    the folder's one COCO file under any name."""
    for name in (annotations, ROBOFLOW_FILE, DEFAULT_FILE):
        if name and (folder / name).is_file():
            return folder / name
    found = coco_files(folder) if annotations is None else []
    return found[0] if len(found) == 1 else None


def _split_folders(base: Path, annotations: str | None, names: dict[str, tuple[str, ...]]
                   ) -> dict[str, tuple[Path, str]]:  # fmt: skip
    """Role -> (file, folder name) for `<root>/<split>/<file>`; each role tries its configured
    name first, then the other names of its split, never a folder another role took."""
    found: dict[str, tuple[Path, str]] = {}
    for exact in (True, False):
        for role, aliases in names.items():
            for name in aliases[:1] if exact else aliases[1:]:
                taken = {split for _, split in found.values()}
                if role in found or name in taken or name == ROOT_SPLIT:
                    continue
                path = _in_split_folder(base / name, annotations)
                if path is not None:
                    found[role] = (path, name)
    return found if "train" in found else {}


def _templated(base: Path, template: str, names: dict[str, tuple[str, ...]]
               ) -> dict[str, tuple[Path, str]]:  # fmt: skip
    """Role -> (file, split name) for `dataset.annotations` holding `{split}`."""
    found: dict[str, tuple[Path, str]] = {}
    for role, aliases in names.items():
        taken = {split for _, split in found.values()}
        for name in (a for a in aliases if a not in taken):
            path = base / template.replace("{split}", name)
            if path.is_file():
                found[role] = (path, name)
                break
    if "train" not in found:
        wanted = base / template.replace("{split}", names["train"][0])
        pattern = re.compile(re.escape(Path(template).name).replace(r"\{split\}", "(.+)"))
        there = [m[1] for p in sorted(wanted.parent.glob("*")) if (m := pattern.fullmatch(p.name))]
        hint = f"; that pattern matches split(s) {', '.join(there)}: name the train one with " \
               f"dataset.train_split={there[0]}" if there else ""  # fmt: skip
        raise DatasetError(
            f"dataset.annotations={template}: {shown(wanted)} does not exist (nor for "
            f"{'/'.join(names['train'][1:]) or 'another name'}); COCO files in "
            f"{shown(wanted.parent)}: {_listed(coco_files(wanted.parent), base)}{hint}"
        )
    return found


def _at_root(base: Path, names: dict[str, tuple[str, ...]]) -> tuple[str, dict[str, Path]] | None:
    """The root's COCO files (any name), else CVAT's `annotations/instances_*.json` (or the
    folder's other COCO files when it has none such): one file is all the data, several are a
    split each, by name."""
    files = coco_files(base)
    if len(files) == 1:
        return "single", {"train": files[0]}
    if files:
        return "single", _by_name(files, names, base)
    cvat_dir = base / ANNOTATIONS_DIR
    files = coco_files(cvat_dir)
    instances = [p for p in files if p.name.startswith(CVAT_PREFIX)]
    if instances and len(instances) < len(files):  # COCO's own captions_*, person_keypoints_*
        others = [p for p in files if p not in instances]
        logger.info("%s: using the %s* files, not %s", shown(cvat_dir), CVAT_PREFIX,
                    _listed(others, base))  # fmt: skip
        files = instances
    if len(files) == 1:
        return "cvat", {"train": files[0]}
    return ("cvat", _by_name(files, names, base)) if files else None


def _images_dir(path: Path, split: str, base: Path, images_dir: str, in_split_folder: bool) -> Path:
    """Where a file's images are first looked up: `images_dir` with `{split}` filled, else
    under the split folder (pre-split), else `images/<subset>/` (CVAT) or `images/`."""
    if "{split}" in images_dir:
        folder = base / images_dir.replace("{split}", split)
        if not folder.is_dir():
            raise DatasetError(
                f"dataset.images_dir={images_dir}: {shown(folder)} does not exist (the images of "
                f"{relative_key(path, base)}); folders in {shown(folder.parent)}: "
                f"{', '.join(subfolders(folder.parent)) or 'none'}; set dataset.images_dir="
            )
        return folder
    if in_split_folder:
        return path.parent / images_dir
    subset = _subset(path)
    nested = [base / images_dir / subset]
    if path.parent.name == ANNOTATIONS_DIR:  # COCO's own: annotations/ beside train2017/
        nested.append(base / subset)
    return next((d for d in nested if d.is_dir()), base / images_dir)


def _choose(found: dict[str, tuple[Path, str]], val_split: str | None, test_split: str | None,
            test_fraction: float | None, name: str, base: Path
            ) -> tuple[dict[str, tuple[Path, str]], list[str]]:  # fmt: skip
    """The files each split uses: with test_split=null a test file is not used; with train and
    val only, val is what is evaluated, as for every format (`evaluated_splits`); with
    val_split=null a val file is not used for validation."""
    notes = []
    chosen = dict(found)
    if test_split is None and "test" in chosen:
        path, _ = chosen.pop("test")
        notes.append(f"{relative_key(path, base)} is not used: dataset.test_split=null holds "
                     f"the test split out of train")  # fmt: skip
    val, test = chosen.pop("val", None), chosen.pop("test", None)
    by_path = {entry[0]: entry for entry in (val, test) if entry is not None}
    val_path, test_path = evaluated_splits(name, val and val[0], test and test[0], test_split,
                                           test_fraction)  # fmt: skip
    chosen.update({r: by_path[p] for r, p in (("val", val_path), ("test", test_path)) if p})
    if val_split is None and "val" in chosen:
        path, _ = chosen.pop("val")
        notes.append(f"{relative_key(path, base)} is not used: dataset.val_split=null carves "
                     f"validation from train")  # fmt: skip
    return chosen, notes


def find_layout(base: Path, annotations: str | None, images_dir: str, train_split: str,
                val_split: str | None, test_split: str | None, test_fraction: float | None = None,
                name: str = "coco") -> CocoLayout:  # fmt: skip
    """The COCO files of the dataset at `base` and the split each is, in the order of the
    module docstring; `annotations` names the file (or, with `{split}`, one per split)."""
    names = _names(train_split, val_split, test_split)
    if annotations is not None and "{split}" in annotations:
        kind, found = "template", _templated(base, annotations, names)
        in_folder = False
    elif found := _split_folders(base, annotations, names):
        roboflow = found["train"][0].name == ROBOFLOW_FILE
        kind, in_folder = "roboflow" if roboflow else "pre-split", True
    elif annotations is not None:
        path = base / annotations
        if not path.is_file():
            raise DatasetError(
                f"dataset.annotations={annotations}: {shown(path)} does not exist (nor "
                f"{shown(base / train_split / annotations)}); COCO files here: "
                f"{_listed(_known(base), base)}; name one with dataset.annotations=<path under "
                f"the root> (it may hold {{split}})"
            )
        kind, found, in_folder = "single", {"train": (path, _subset(path))}, False
    elif at_root := _at_root(base, names):
        kind, files = at_root
        found = {role: (path, _subset(path)) for role, path in files.items()}
        in_folder = False
    else:
        raise DatasetError(
            f"no COCO annotations in {shown(base)}: looked for a COCO json at the root (any name), "
            f"<split>/{DEFAULT_FILE} or Roboflow's <split>/{ROBOFLOW_FILE} for split "
            f"{'/'.join(names['train'])}, and CVAT's {ANNOTATIONS_DIR}/{CVAT_PREFIX}*.json; "
            f"folders here: {', '.join(subfolders(base)) or 'none'}; JSON files: "
            f"{_listed(sorted(base.glob('*.json')), base)}; name the file with "
            f"dataset.annotations=<path under the root> (it may hold {{split}})"
        )
    chosen, notes = _choose(found, val_split, test_split, test_fraction, name, base)
    files = {role: CocoFile(path, _images_dir(path, split, base, images_dir, in_folder), split)
             for role, (path, split) in chosen.items()}  # fmt: skip
    return CocoLayout(kind, files["train"], files.get("val"), files.get("test"), tuple(notes))


def _known(base: Path) -> list[Path]:
    """The COCO files a refusal lists: at the root, in annotations/ and in each sub-folder."""
    folders = [base, *(base / name for name in subfolders(base))]
    return [p for folder in folders for p in coco_files(folder)]
