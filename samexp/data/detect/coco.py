"""COCO files (`dataset=coco`): Roboflow's `<split>/_annotations.coco.json`, CVAT's
`annotations/instances_<subset>.json` + `images/`, one JSON per split (`train.json`, `val.json`),
or one JSON anywhere (labelme2coco's `annotations.json` + `JPEGImages/`).

Every COCO file found is read (bounded by `samexp.config.limits`): its `file_name`s say where the images
are, and its counts are what `inspect` prints. Several files that are not one per split are one
reading each, so none is ever ignored silently.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from samexp.config.errors import DatasetError
from samexp.config.limits import load_json
from samexp.data.detect.jsonhead import json_kind
from samexp.data.detect.reading import Reading, split_arguments
from samexp.data.detect.tree import Tree, join
from samexp.data.split_folders import split_of

ROBOFLOW_FILE = "_annotations.coco.json"
CVAT_DIR = "annotations"
_PEEKED = 8  # JSON heads read per folder, beyond those named after an image
_PROBED = 5  # file_names looked up to find the images folder


@dataclass
class CocoCount:
    """What `inspect` prints of one COCO file."""

    path: str  # relative to the root
    images: int = 0
    instances: int = 0
    per_class: Counter[str] = field(default_factory=Counter)
    images_dir: str | None = None  # where its first file_names were found, relative to the root


def coco_files(tree: Tree) -> list[str]:
    """The COCO files under the root (relative paths), told from their heads."""
    out = []
    for rel, folder in tree.folders.items():
        jsons = folder.with_suffix(".json")
        if len(jsons) > _PEEKED:  # LabelMe's JSONs are named after their images: not opened
            stems = {os.path.splitext(n)[0] for n in folder.images}
            jsons = [n for n in jsons if os.path.splitext(n)[0] not in stems][:_PEEKED]
        out += [join(rel, n) for n in jsons if _kind(tree, rel, n) == "coco"]
    return sorted(out)


def _kind(tree: Tree, rel: str, name: str) -> str | None:
    path = tree.inside(rel, name)
    return json_kind(path) if path is not None else None


def count(tree: Tree, rel: str) -> CocoCount:
    """Images, instances per category and the images folder of one COCO file."""
    path = tree.root / rel
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: not a COCO file (no 'images' list)")
    names = {c.get("id"): str(c.get("name")) for c in data.get("categories") or []
             if isinstance(c, dict)}  # fmt: skip
    out = CocoCount(rel, images=len(data["images"]))
    for a in data.get("annotations") or []:
        if isinstance(a, dict) and not a.get("iscrowd"):
            out.instances += 1
            out.per_class[names.get(a.get("category_id"), str(a.get("category_id")))] += 1
    files = [im.get("file_name") for im in data["images"][:_PROBED] if isinstance(im, dict)]
    out.images_dir = _images_dir(
        tree, PurePosixPath(rel).parent, [f for f in files if isinstance(f, str)]
    )
    return out


def _images_dir(tree: Tree, beside: PurePosixPath, files: list[str]) -> str | None:
    """The folder (relative to the root) under which the file_names are: `images/` beside the
    JSON or under the root, beside the JSON, the root itself; else any folder holding them."""
    if not files:
        return None
    tried = [join(str(beside), "images"), "images", str(beside), ".",
             join(str(beside), "JPEGImages"), "JPEGImages"]  # fmt: skip
    for rel in dict.fromkeys(tried):
        if all((tree.root / rel / f).is_file() for f in files):
            return rel
    first = PurePosixPath(files[0]).name
    return next((rel for rel, folder in tree.folders.items() if first in folder.files), None)


def _template(paths: dict[str, str], split_dirs: dict[str, str]) -> str | None:
    """`paths` of each split written once with `{split}` (the split folder's name), or None."""
    templates = {p.replace(split_dirs[s], "{split}", 1) for s, p in paths.items()}
    return templates.pop() if len(templates) == 1 and "{split}" in next(iter(templates)) else None


def readings(tree: Tree) -> list[Reading]:
    files = coco_files(tree)
    if not files:
        return []
    counts = {rel: count(tree, rel) for rel in files}
    groups: dict[
        tuple[str, str], dict[str, str]
    ] = {}  # (folder pattern, name pattern) -> split -> file
    for rel in files:
        path = PurePosixPath(rel)
        parent, stem = path.parent, path.name[: -len(".json")]
        if split_of(parent.name):  # <split>/_annotations.coco.json, <split>/annotations.json
            groups.setdefault((str(parent.parent), f"{{split}}/{path.name}"), {})[parent.name] = rel
            continue
        name = stem.removeprefix("instances_")
        if split_of(name):  # annotations/instances_train.json, train.json
            prefix = "instances_" if stem.startswith("instances_") else ""
            groups.setdefault((str(parent), f"{prefix}{{split}}.json"), {})[name] = rel
            continue
        groups[(rel, "")] = {}
    out = []
    for (where, pattern), members in groups.items():
        if not pattern:
            out.append(_single(tree, counts[where]))
            continue
        split_dirs = {split_of(n): n for n in members}
        if "train" not in split_dirs:  # val.json alone: one file, read whole
            out += [_single(tree, counts[rel]) for rel in members.values()]
            continue
        annotations = join(where, pattern) if where != "." else pattern
        chosen = {split_of(n): rel for n, rel in members.items()}
        dirs = {s: counts[rel].images_dir or "." for s, rel in chosen.items()}
        images_dir = _template(dirs, split_dirs) or dirs["train"]
        why = ["COCO file per split: " + ", ".join(f"{n} -> {rel}" for n, rel in members.items())]
        out.append(Reading("coco", tree.root,
                           {"annotations": annotations, "images_dir": images_dir,
                            **split_arguments(split_dirs)},
                           why, found={"counts": {n: counts[rel] for n, rel in members.items()}}))  # fmt: skip
    return out


def _single(tree: Tree, found: CocoCount) -> Reading:
    """One file for all images: the test split is held out of it."""
    kind = ("CVAT" if PurePosixPath(found.path).parent.name == CVAT_DIR else
            "labelme2coco" if found.images_dir and found.images_dir.endswith("JPEGImages") else
            "one")  # fmt: skip
    why = [f"{kind} COCO file {found.path} ({found.images} images, {found.instances} instances), "
           f"images in {found.images_dir or '?'}/"]  # fmt: skip
    return Reading("coco", tree.root,
                   {"annotations": found.path, "images_dir": found.images_dir or ".",
                    "train_split": ".", "test_split": None},
                   why, found={"counts": {".": found}})  # fmt: skip
