"""Where a YOLO segmentation dataset keeps what: its class names (`data.yaml`, else a names file
beside the images, else the ids themselves) and each split's images folder, whose labels are
found by Ultralytics' rule (the last `images` folder in the path becomes `labels`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from samexp.config.errors import DatasetError
from samexp.config.limits import load_yaml, read_lines
from samexp.data.files import shown
from samexp.data.split_folders import split_candidates, split_folder, subfolders

logger = logging.getLogger(__name__)

# one class name per line, line i is id i: LabelImg's classes.txt, Darknet's obj.names
NAMES_FILES = ("classes.txt", "classes.names", "obj.names")
LAYOUTS = ("images/{split}", "{split}/images")  # Ultralytics', Roboflow's


@dataclass(frozen=True)
class ClassNames:
    """What a label line's class id is called."""

    names: tuple[str, ...] | None  # by id; None: no list, the ids are the names ("0", "1", ...)
    source: str  # where they come from, for messages: "data.yaml's names", "classes.txt"

    def of(self, text: str, number: float, where: str) -> str:
        """The name of class id `number` (written `text`), or a DatasetError at `where`."""
        known = self.names is None or number < len(self.names)
        if not number.is_integer() or number < 0 or not known:
            listed = f"(0..{len(self.names) - 1})" if self.names is not None else "(0, 1, ...)"
            raise DatasetError(f"{where}: class id {text} is not in {self.source} {listed}")
        return str(int(number)) if self.names is None else self.names[int(number)]


def inside(base: Path, path: Path, what: str) -> Path:
    """`path` resolved, refused when it leaves `base` (a `..` or a symlink pointing out)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise DatasetError(f"{what} {shown(path)} is outside the dataset root {shown(base)}")
    return resolved


def read_data_yaml(path: Path) -> tuple[list[str], dict]:
    """Class names by id from `data.yaml` (a list, or a mapping {0: cat, 1: dog} with ids
    0..n-1) and the whole file. Read safely (a dataset file never runs code) and bounded: size
    limited, aliases refused (`samexp.config.limits.load_yaml`).
    """
    if not path.is_file():
        yamls = sorted(p.name for p in path.parent.glob("*.y*ml") if p.is_file())
        found = f"YAML files there: {', '.join(yamls)}" if yamls else "no YAML file there"
        raise DatasetError(
            f"{shown(path)} does not exist ({found}); point dataset.data_yaml at the file with "
            f"the class names, or set dataset.data_yaml=null to read them from "
            f"{'/'.join(NAMES_FILES)} (else the class ids are the names)"
        )
    data = load_yaml(path)
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except ValueError as e:
            raise DatasetError(f"{shown(path)}: 'names' keys must be class ids ({e})") from e
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(f"{shown(path)}: 'names' ids must be 0..{len(by_id) - 1}")
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise DatasetError(
            f"{shown(path)}: no 'names' list; write e.g. `names: [cat, dog]` or "
            f"`names: {{0: cat, 1: dog}}`"
        )
    return [str(n) for n in names], data


def read_names_file(path: Path) -> list[str]:
    """One class name per line, line i is id i (trailing blank lines aside)."""
    names = [line.strip() for line in read_lines(path)]
    while names and not names[-1]:
        names.pop()
    if not names or "" in names:
        what = "lists no class" if not names else f"line {names.index('') + 1} is blank"
        raise DatasetError(
            f"{shown(path)} {what}: it is read as one class name per line, line i being class "
            f"id i; write the names, or remove the file to name the classes by their ids"
        )
    return names


def class_names(base: Path, data_yaml: str | None) -> tuple[ClassNames, dict]:
    """The classes and the whole `data.yaml` (empty without one). `data_yaml=None`: the first
    names file of NAMES_FILES in the root, else the ids as names (said in the log)."""
    if data_yaml is not None:
        path = inside(base, base / data_yaml, "dataset.data_yaml")
        names, stated = read_data_yaml(path)
        return ClassNames(tuple(names), f"{path.name}'s names"), stated
    for file in NAMES_FILES:
        if (base / file).is_file():
            names = read_names_file(base / file)
            logger.info("%s: YOLO class names from %s: %s", shown(base), file, ", ".join(names))
            return ClassNames(tuple(names), file), {}
    logger.info(
        "%s: no data.yaml and no %s: the classes are named by their ids (0, 1, ...); write "
        "one name per line to classes.txt to name them",
        shown(base), "/".join(NAMES_FILES),
    )  # fmt: skip
    return ClassNames(None, "the class ids"), {}


def labels_folder(images_dir: Path, base: Path | None = None) -> Path:
    """Ultralytics' rule: the last `images` folder of the path (below `base`, when given)
    becomes `labels`; without one, the labels are beside the images."""
    below = images_dir.relative_to(base) if base is not None else images_dir
    parts = list(below.parts)
    if "images" not in parts:
        return images_dir
    at = len(parts) - 1 - parts[::-1].index("images")
    return (base or Path()) / Path(*parts[:at], "labels", *parts[at + 1 :])


def _stated_folder(base: Path, stated: object, role: str) -> Path | None:
    """The folder `data.yaml` names for `role`, if it is one under the root."""
    if isinstance(stated, str):
        rel = PurePosixPath(stated)
        path = base / rel
        # Roboflow writes `../train/images`, relative to a folder above the root: Ultralytics
        # then tries without the `../`, and so does this (anything still outside is refused)
        if not path.is_dir() and rel.parts[:1] == ("..",):
            path = base / PurePosixPath(*rel.parts[1:])
        if path.is_dir():
            return inside(base, path, f"data.yaml's {role}:")
        logger.warning("data.yaml's %s: %s is not a folder under %s; looking for the %s images "
                       "by layout", role, stated, shown(base), role)  # fmt: skip
    elif stated is not None:
        raise DatasetError(
            f"data.yaml's {role}: {stated!r:.80} is not one folder; samexp reads a folder of "
            f"images per split (lists and .txt file lists are not): set dataset.images_dir to "
            f"the folders' pattern, e.g. dataset.images_dir=images/{{split}}"
        )
    return None


def find_images(base: Path, role: str, split: str, images_dir: str | None,
                stated: object = None) -> Path | None:  # fmt: skip
    """The images folder of `split` (or one of its other names, `split_folders`): by the
    `images_dir` template when given, else as `data.yaml` states it, else by either layout."""
    if images_dir is None:
        found = _stated_folder(base, stated, role)
        if found is not None:
            return found
    for name in split_candidates(split):
        for template in LAYOUTS if images_dir is None else (images_dir,):
            path = split_folder(base, name, template)
            if path.is_dir():
                return inside(base, path, f"{role} images folder")
    return None


def missing_split(base: Path, role: str, split: str, images_dir: str | None) -> DatasetError:
    """The refusal for a split that is not there: where it was looked for, what folders exist,
    and the overrides that point at it."""
    looked = [
        f"{split_folder(Path(), name, t).as_posix()}/"
        for name in split_candidates(split)
        for t in (LAYOUTS if images_dir is None else (images_dir,))
    ]
    present = [f"{name}/" for name in subfolders(base)]
    present += [f"images/{name}/" for name in subfolders(base / "images")]
    return DatasetError(
        f"no YOLO {role} images under {shown(base)}: looked for {', '.join(looked)}; folders "
        f"there: {', '.join(present) or 'none'}; set dataset.{role}_split=<name> and "
        f"dataset.images_dir=<pattern with {{split}}> (e.g. images/{{split}}, {{split}}/images; "
        f"split . is the root itself)"
    )
