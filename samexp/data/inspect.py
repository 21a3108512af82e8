"""What `python -m samexp.data inspect ROOT` prints: the reading of the folder as the explicit
overrides (`samexp.data.detect`), then images and instances per split, classes with their
instance (and, for masks, pixel) counts, and the mask value histogram.

Counted from names and annotation files, never by building the dataset: COCO files, YOLO label
files and LabelMe JSONs are read (they are small beside the images); of mask files only a bounded
sample (`values.SAMPLE`) is decoded, and the line says "from N of M masks".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from samexp.data.classes import read_classes
from samexp.data.detect import Reading, detect, scan
from samexp.data.detect.tree import Tree
from samexp.data.detect.values import MaskValues, read_values
from samexp.errors import DatasetError
from samexp.limits import TEXT_BYTES, load_json, read_bytes

_SHOWN_VALUES = 12  # histogram entries printed


@dataclass
class Counts:
    """Per split (name as found): images, instances; per class: instances, pixels."""

    images: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    per_class: Counter[str] = field(default_factory=Counter)
    pixels: Counter[str] | None = None  # per class, over the sampled masks
    values: MaskValues | None = None  # the sampled masks' values
    source: str = ""  # where instance counts come from


def _pairs_counts(reading: Reading) -> Counts:
    matches = reading.found["matches"]
    place = reading.found["place"]
    counts = Counts()
    for split, match in matches.items():
        counts.images[place.splits[split]] = len(match.pairs)
    return counts


def _folder(reading: Reading, tree: Tree) -> Counts:
    counts = _pairs_counts(reading)
    values: MaskValues = reading.found["values"]
    threshold = reading.arguments.get("mask_threshold", 127)
    counts.instances = dict(counts.images)  # one per image (an empty mask is skipped at load)
    counts.per_class["foreground"] = sum(counts.images.values())
    counts.pixels = Counter({
        "foreground": sum(c for v, c in values.histogram.items() if v > threshold),
        "background": sum(c for v, c in values.histogram.items() if v <= threshold),
    })  # fmt: skip
    counts.values, counts.source = values, "one per image"
    return counts


def _labelmap(reading: Reading, tree: Tree) -> Counts:
    counts = _pairs_counts(reading)
    values = reading.found.get("values") or read_values(reading.found["masks"])
    names: dict[int, str] = {}
    if reading.arguments.get("classes_file"):
        try:
            names = read_classes(tree.root / reading.arguments["classes_file"])
        except DatasetError:
            names = {}  # a colour table (labelmap.txt): values are shown as ids
    counts.pixels = Counter({names.get(v, str(v)): c for v, c in values.histogram.items()})
    counts.values = values
    counts.source = f"the {values.read} masks read (masks holding each class)"
    counts.per_class = Counter({names.get(v, str(v)): n for v, n in values.present.items()})
    return counts


def _coco(reading: Reading, tree: Tree) -> Counts:
    counts = Counts(source="annotations")
    for split, found in reading.found["counts"].items():
        counts.images[split] = found.images
        counts.instances[split] = found.instances
        counts.per_class.update(found.per_class)
    return counts


def _yolo(reading: Reading, tree: Tree) -> Counts:
    names = reading.found["names"] or []
    counts = Counts(source="label lines")
    template = reading.arguments["images_dir"]
    for split, labels in reading.found["labels"].items():
        rel = template.replace("{split}", split) if "{split}" in template else f"{split}/{template}"
        folder = tree.get(os.path.normpath(rel))
        counts.images[split] = len(folder.images) if folder else 0
        n = 0
        for path in labels:
            for line in read_bytes(path, TEXT_BYTES).decode("utf-8", "replace").splitlines():
                fields = line.split()
                if fields:
                    n += 1
                    ids = int(fields[0]) if fields[0].isdigit() else -1
                    counts.per_class[names[ids] if 0 <= ids < len(names) else fields[0]] += 1
        counts.instances[split] = n
    return counts


def _labelme(reading: Reading, tree: Tree) -> Counts:
    counts = Counts(source="shapes")
    for rel in reading.found["folders"]:
        folder = tree.get(rel)
        jsons = folder.with_suffix(".json")
        counts.images[rel], n = len(jsons), 0
        for name in jsons:
            path = tree.inside(rel, name)
            data = load_json(path) if path is not None else None
            shapes = data.get("shapes") if isinstance(data, dict) else None
            for shape in shapes if isinstance(shapes, list) else []:
                label = shape.get("label") if isinstance(shape, dict) else None
                counts.per_class[str(label)] += 1
                n += 1
        counts.instances[rel] = n
    return counts


COUNTERS: dict[str, Callable[[Reading, Tree], Counts]] = {
    "folder": _folder,
    "labelmap": _labelmap,
    "coco": _coco,
    "yolo": _yolo,
    "labelme": _labelme,
}


def inspect_text(root: str | Path, prefer: str | None = None) -> str:
    """The report `inspect` prints; DatasetError when the folder reads as nothing or as several."""
    tree = scan(root)
    reading = detect(root, prefer, tree)
    tree = tree if reading.root == tree.root else scan(reading.root)
    counts = COUNTERS[reading.format](reading, tree)
    lines = [reading.line(), f"read as {reading.format}: " + "; ".join(reading.why)]
    lines += [f"note: {n}" for n in reading.notes]
    lines.append("split       images  instances")
    for split, images in counts.images.items():
        instances = counts.instances.get(split)
        lines.append(f"{split:<10} {images:>7}  {'' if instances is None else instances:>9}")
    lines += _classes(counts)
    lines += _histogram(counts.values)
    return "\n".join(lines)


def _classes(counts: Counts) -> list[str]:
    if not counts.per_class and not counts.pixels:
        return []
    names = list(dict.fromkeys([*counts.per_class, *(counts.pixels or {})]))
    total = sum((counts.pixels or {}).values()) or 1
    out = [f"classes ({len(names)}), instances from {counts.source}"
           + (f", pixels from {counts.values.read} of {counts.values.of} masks"
              if counts.values else "") + ":"]  # fmt: skip
    for name in names:
        pixels = (f"  {100 * counts.pixels[name] / total:6.2f}% of pixels"
                  if counts.pixels is not None else "")  # fmt: skip
        instances = counts.per_class.get(name) if counts.per_class else None
        out.append(f"  {name:<20} {'' if instances is None else instances:>9}{pixels}")
    return out


def _histogram(values: MaskValues | None) -> list[str]:
    if values is None:
        return ["mask values: none (the annotations are polygons, not mask files)"]
    total = sum(values.histogram.values()) or 1
    top = sorted(values.histogram.items(), key=lambda vc: -vc[1])[:_SHOWN_VALUES]
    shown = ", ".join(f"{v}: {100 * c / total:.2f}%" for v, c in sorted(top))
    more = len(values.histogram) - len(top)
    return [f"mask values, from {values.read} of {values.of} masks: {shown}"
            + (f" (and {more} rarer values)" if more > 0 else "")]  # fmt: skip
