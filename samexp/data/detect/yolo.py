"""YOLO segmentation exports (`dataset=yolo`): `data.yaml` (Ultralytics, Roboflow) or none, and
`images/` + `labels/` with one `.txt` of polygons per image, split as `images/<split>`,
`<split>/images` or not at all. A few label files tell segmentation (a polygon per line) from a
detection export (5 numbers per line: boxes), which cannot be trained on and is refused saying so.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from samexp.config.errors import DatasetError
from samexp.config.limits import TEXT_BYTES, load_yaml, read_bytes
from samexp.data.detect.reading import Reading, split_arguments
from samexp.data.detect.tree import Tree, join
from samexp.data.detect.values import sample
from samexp.data.split_folders import split_of

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
_SAMPLE = 20  # label files read to tell segmentation from detection


def _layouts(tree: Tree) -> list[tuple[str, dict[str, str]]]:
    """(images_dir template, canonical split -> name) of every YOLO arrangement present."""
    out = []
    images, labels = tree.get("images"), tree.get("labels")
    if images is not None and labels is not None:
        splits = {split_of(d): d for d in images.dirs if split_of(d) and d in labels.dirs}
        if "train" in splits:
            out.append(("images/{split}", splits))
        elif images.images and labels.with_suffix(".txt"):
            out.append(("images", {"train": "."}))
    root = tree.get(".")
    splits = {}
    for d in root.dirs:
        split, folder = split_of(d), tree.get(d)
        if split and folder is not None and {"images", "labels"} <= set(folder.dirs):
            splits.setdefault(split, d)
    if "train" in splits:
        out.append(("{split}/images", splits))
    return out


def _labels(tree: Tree, images_dir: str, splits: dict[str, str]) -> dict[str, list[Path]]:
    """The label files of each split (by Ultralytics' rule: the `images` folder becomes `labels`)."""
    out = {}
    for name in splits.values():
        rel = (
            images_dir.replace("{split}", name)
            if "{split}" in images_dir
            else join(name, images_dir)
        )
        labels_rel = "/".join("labels" if p == "images" else p for p in rel.split("/"))
        folder = tree.get(labels_rel)
        out[name] = [tree.path(labels_rel, f) for f in folder.with_suffix(".txt")] if folder else []
    return out


def _numbers_per_line(paths: list[Path]) -> Counter[int]:
    seen: Counter[int] = Counter()
    for path in sample(paths, _SAMPLE):
        text = read_bytes(path, TEXT_BYTES).decode("utf-8", "replace")
        seen.update(len(line.split()) for line in text.splitlines() if line.strip())
    return seen


def readings(tree: Tree) -> list[Reading]:
    out = []
    yaml_name = next((n for n in YAML_NAMES if n in tree.get(".").files), None)
    names = _names(tree, yaml_name)
    for images_dir, splits in _layouts(tree):
        labels = _labels(tree, images_dir, splits)
        every = [p for paths in labels.values() for p in paths]
        if not every:
            continue
        lengths = _numbers_per_line(every)
        args = {"data_yaml": yaml_name, "images_dir": images_dir, **split_arguments(splits)}
        why = [f"YOLO labels: {len(every)} .txt files beside {images_dir.replace('{split}', '<split>')}/"
               + (f", classes from {yaml_name}" if yaml_name else ", no data.yaml")]  # fmt: skip
        found = {"labels": labels, "names": names}
        reading = Reading("yolo", tree.root, args, why, found=found)
        if lengths and set(lengths) == {5}:
            reading.refusal = (
                f"{tree.root}: the YOLO label files hold boxes (5 numbers per line: class x_center "
                f"y_center width height), not polygons: this is a YOLO detection export; export "
                f"the segmentation format (polygons), or make masks from the boxes first"
            )
        out.append(reading)
    return out


def _names(tree: Tree, yaml_name: str | None) -> list[str] | None:
    if yaml_name is None:
        return None
    path = tree.inside(".", yaml_name)
    data = load_yaml(path) if path is not None else None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError) as e:
            raise DatasetError(f"{path}: 'names' keys must be class ids ({e})") from e
    return [str(n) for n in names] if isinstance(names, list) else None
