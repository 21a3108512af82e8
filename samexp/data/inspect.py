"""What `python -m samexp.data inspect ROOT` prints: the reading of the folder as the explicit
overrides (`samexp.data.detect`), then images and instances per split, the classes a run trains
with their instance (and, for masks, pixel) counts, the ids that are no class (background,
ignored), and the mask value histogram.

Counted from names and annotation files, never by building the dataset: COCO files, YOLO label
files and LabelMe JSONs are read (they are small beside the images); of mask files only a bounded
sample (`values.SAMPLE`) is decoded, and the report says "from N of M masks". Classes are what the
loader decides, by the loader's own code: a label map's class list and its background and ignore
ids by `classes.label_classes`, its pixels by `labelmap.read_label` (a colour label map's colours
become class ids through its colour table), LabelMe's `__ignore__` shapes left out as the loader
leaves them out; so what inspect lists is what a run trains.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from samexp.config.limits import TEXT_BYTES, load_json, read_bytes
from samexp.data.classes import DEFAULT_BACKGROUND, LabelClasses, label_classes
from samexp.data.detect import Reading, detect, scan
from samexp.data.detect.tree import Tree
from samexp.data.detect.values import MaskValues, merged, read_values, sample
from samexp.data.folder import MASK_THRESHOLD
from samexp.data.labelmap import read_label
from samexp.data.labelme import IGNORE_LABEL
from samexp.data.splits import TEST_FRACTION

_SHOWN_VALUES = 12  # histogram entries printed
_LISTED = 5  # unknown ids a note names


@dataclass
class Counts:
    """Per split (name as found): images, instances; per class: instances, pixels; and what is
    no class (background, ignored), said apart from the classes."""

    images: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    per_class: Counter[str] = field(default_factory=Counter)
    pixels: Counter[str] | None = None  # per class, over the sampled masks
    values: MaskValues | None = None  # the sampled masks' values
    source: str = ""  # what an instance is, where it is counted from
    not_classes: list[str] = field(default_factory=list)  # "background 0: 71.48% of pixels"
    value_names: dict[int, str] = field(default_factory=dict)  # histogram labels: "1 cell"
    notes: list[str] = field(default_factory=list)  # what the loader will refuse or skip


def _share(pixels: int, total: int) -> str:
    return f"{100 * pixels / (total or 1):.2f}%"


def _pairs_counts(reading: Reading) -> Counts:
    matches = reading.found["matches"]
    place = reading.found["place"]
    counts = Counts()
    for split, match in matches.items():
        counts.images[place.splits[split]] = len(match.pairs)
    return counts


def _unreadable(values: MaskValues) -> list[str]:
    if not values.unreadable:
        return []
    tried = values.read + len(values.unreadable)
    return [f"{len(values.unreadable)} of the {tried} masks read cannot be loaded, and the "
            f"loader refuses them: {values.unreadable[0]}"]  # fmt: skip


def _folder(reading: Reading, tree: Tree) -> Counts:
    counts = _pairs_counts(reading)
    values: MaskValues = reading.found["values"]
    threshold = reading.arguments.get("mask_threshold", MASK_THRESHOLD)
    counts.instances = dict(counts.images)  # one per image (an empty mask is skipped at load)
    counts.per_class["object"] = sum(counts.images.values())  # the loader's category name
    foreground = sum(c for v, c in values.histogram.items() if v > threshold)
    counts.pixels = Counter({"object": foreground})
    background = sum(values.histogram.values()) - foreground
    counts.not_classes = [f"background (values ≤ {threshold}): "
                          f"{_share(background, sum(values.histogram.values()))} of pixels"]  # fmt: skip
    counts.values, counts.source = values, "instances: one per image"
    counts.notes = _unreadable(values)
    return counts


def _labelmap(reading: Reading, tree: Tree) -> Counts:
    """The loader's classes (`label_classes` with the reading's arguments) and its reading of a
    sample of the labels (`read_label`), split by split so that a split read whole has its
    instances counted exactly (one per class present in a label, as the loader counts)."""
    counts = _pairs_counts(reading)
    args = reading.arguments
    chosen = {k: args[k] for k in ("classes_file", "background_ids", "ignore_index") if k in args}
    classes = label_classes(tree.root, **chosen)
    masks: dict[str, list[Path]] = reading.found["masks"]
    picked = set(sample([p for paths in masks.values() for p in paths]))
    per_split = {
        split: read_values(paths, sum(p in picked for p in paths),
                           read=lambda path: read_label(path, classes))
        for split, paths in masks.items()
    }  # fmt: skip
    values = merged(per_split.values())
    classes.admit(values.histogram)  # by id (no class list): every id seen, as the loader does
    targets = classes.targets
    for split, seen in per_split.items():
        if seen.read == seen.of:
            counts.instances[split] = sum(n for i, n in seen.present.items() if i in targets)
    background = set(DEFAULT_BACKGROUND if args.get("background_ids") is None
                     else args["background_ids"])  # fmt: skip
    ignored = classes.known - set(targets) - background  # the ignore_index, when one is set
    counts.per_class = Counter({name: values.present[i] for i, name in sorted(targets.items())})
    counts.pixels = Counter({name: values.histogram[i] for i, name in sorted(targets.items())})
    names = {**{i: "background" for i in background}, **{i: "ignored" for i in ignored}, **targets}
    counts.not_classes = [_no_class(i, names[i], values) for i in sorted(background | ignored)]
    counts.value_names = {i: _value_name(i, names.get(i, "unknown"), classes)
                          for i in {*names, *values.histogram}}  # fmt: skip
    counts.values, counts.source = values, "instances: labels holding the class, in the masks read"
    counts.notes = _unreadable(values) + _unknown(values, classes)
    return counts


def _no_class(value: int, what: str, values: MaskValues) -> str:
    """`background 0: 71.48% of pixels`, or `ignored 255: none in the masks read`."""
    pixels = values.histogram[value]
    total = sum(values.histogram.values())
    return f"{what} {value}: " + (
        f"{_share(pixels, total)} of pixels" if pixels else "none in the masks read"
    )


def _value_name(value: int, name: str, classes: LabelClasses) -> str:
    """How the histogram names a label value: `1 cell`, `15` (named by its id), or a colour
    label's colour and class, `250,50,83 cell`."""
    if classes.colours is not None:
        colour = next((c for c, i in classes.colours.items() if i == value), None)
        if colour is not None:
            return f"{','.join(map(str, colour))} {name}"
    return str(value) if name == str(value) else f"{value} {name}"


def _unknown(values: MaskValues, classes: LabelClasses) -> list[str]:
    """Ids the class list does not name: the loader refuses a label holding one."""
    unknown = sorted(set(values.histogram) - classes.known - set(classes.targets))
    if not unknown:
        return []
    listed = ", ".join(map(str, unknown[:_LISTED])) + (" ..." if len(unknown) > _LISTED else "")
    return [f"label values {listed} are not in {classes.path} nor background/ignored: the "
            f"loader refuses such labels; add them as classes or fix the label maps"]  # fmt: skip


def _coco(reading: Reading, tree: Tree) -> Counts:
    counts = Counts(source="instances from the annotation files")
    for split, found in reading.found["counts"].items():
        counts.images[split] = found.images
        counts.instances[split] = found.instances
        counts.per_class.update(found.per_class)
    return counts


def _yolo(reading: Reading, tree: Tree) -> Counts:
    names = reading.found["names"] or []
    counts = Counts(source="instances from the label lines")
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
    counts = Counts(source="instances from the shapes")
    ignored = 0
    for rel in reading.found["folders"]:
        folder = tree.get(rel)
        jsons = folder.with_suffix(".json")
        counts.images[rel], n = len(jsons), 0
        for name in jsons:
            path = tree.inside(rel, name)
            data = load_json(path) if path is not None else None
            shapes = data.get("shapes") if isinstance(data, dict) else None
            for shape in shapes if isinstance(shapes, list) else []:
                label = str(shape.get("label") if isinstance(shape, dict) else None)
                if label == IGNORE_LABEL:  # a region nobody labelled: the loader skips it
                    ignored += 1
                    continue
                counts.per_class[label] += 1
                n += 1
        counts.instances[rel] = n
    if ignored:
        counts.not_classes = [f"ignored {IGNORE_LABEL}: {ignored} shape(s), skipped by the loader"]
    return counts


COUNTERS: dict[str, Callable[[Reading, Tree], Counts]] = {
    "folder": _folder,
    "labelmap": _labelmap,
    "coco": _coco,
    "yolo": _yolo,
    "labelme": _labelme,
}


def inspect_counts(root: str | Path, prefer: str | None = None) -> tuple[Reading, Counts]:
    """The reading of `root` and what it counts; DatasetError when the folder reads as nothing or
    as several, or when the loader would refuse its class list."""
    tree = scan(root)
    reading = detect(root, prefer, tree)
    tree = tree if reading.root == tree.root else scan(reading.root)
    return reading, COUNTERS[reading.format](reading, tree)


def inspect_text(root: str | Path, prefer: str | None = None) -> str:
    """The report `inspect` prints (`inspect_counts`, as lines)."""
    reading, counts = inspect_counts(root, prefer)
    lines = [reading.line(), f"read as {reading.format}: " + "; ".join(reading.why)]
    lines += [f"note: {n}" for n in reading.notes + counts.notes]
    if "test_split" in reading.arguments and reading.arguments["test_split"] is None:
        lines.append(f"note: no test split: a run holds out {TEST_FRACTION:.0%} of the train "
                     f"images as its test split, by a hash of each file's path "
                     f"(dataset.test_fraction= to choose)")  # fmt: skip
    lines.append("split       images  instances")
    for split, images in counts.images.items():
        instances = counts.instances.get(split)
        lines.append(f"{split:<10} {images:>7}  {'' if instances is None else instances:>9}")
    lines += _classes(counts)
    lines += _histogram(counts)
    return "\n".join(lines)


def _classes(counts: Counts) -> list[str]:
    if not counts.per_class and not counts.pixels:
        return []
    names = list(dict.fromkeys([*counts.per_class, *(counts.pixels or {})]))
    total = sum(counts.values.histogram.values()) if counts.values else 0
    sampled = (f"; pixel counts from {counts.values.read} of {counts.values.of} masks"
               if counts.values else "")  # fmt: skip
    out = [f"classes ({len(names)}), {counts.source}{sampled}:"]
    for name in names:
        pixels = (f"  {_share(counts.pixels[name], total):>7} of pixels"
                  if counts.pixels is not None else "")  # fmt: skip
        instances = counts.per_class.get(name) if counts.per_class else None
        out.append(f"  {name:<20} {'' if instances is None else instances:>9}{pixels}")
    if counts.not_classes:
        out.append("not classes: " + "; ".join(counts.not_classes))
    return out


def _histogram(counts: Counts) -> list[str]:
    values = counts.values
    if values is None:
        return ["mask values: none (the annotations are polygons, not mask files)"]
    if not values.read:
        return [f"mask values: none of the {len(values.unreadable)} masks tried could be read"]
    total = sum(values.histogram.values())
    top = sorted(values.histogram.items(), key=lambda vc: -vc[1])[:_SHOWN_VALUES]
    shown = ", ".join(f"{counts.value_names.get(v, v)}: {_share(c, total)}" for v, c in sorted(top))
    more = len(values.histogram) - len(top)
    return [f"mask values, from {values.read} of {values.of} masks: {shown}"
            + (f" (and {more} rarer values)" if more > 0 else "")]  # fmt: skip
