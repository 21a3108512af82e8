"""Layout detection: which dataset format a folder is, and the explicit overrides that load it.

    from samexp.data.detect import detect, candidates
    reading = detect("/data/voc")          # a Reading, or DatasetError (none / ambiguous)
    reading.format                          # "labelmap": a `dataset=` option
    reading.overrides                       # {"dataset": "labelmap", "dataset.root": "/data/voc",
                                            #  "dataset.images_dir": "JPEGImages", ...}
    reading.line()                          # the same, as a command line (quoted for the shell)
    reading.why, reading.notes              # the evidence, and what to know before loading
    candidates("/data/x")                   # every reading found, best first (no refusal)

Detection reads names (a bounded scan, `tree.scan`), the heads of JSON files, whole annotation
files only where they are the data's index (COCO files, data.yaml, split lists, a few YOLO
labels), and the pixels of at most `values.SAMPLE` masks: never every image.

One reading loads; several are refused, each listed with the overrides that pick it: readings of
different formats are told apart with `dataset.prefer=<format>` (`dataset=auto
dataset.prefer=coco`), two of one format only by pinning the full override line. A root holding
a single folder and nothing to read is looked into (an unzipped archive's top folder).
`python -m samexp.data inspect ROOT` prints the chosen line and counts (`samexp.data.inspect`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from samexp.config.errors import DatasetError, first_few
from samexp.data.detect import coco, labelme, masks, yolo
from samexp.data.detect.reading import Reading
from samexp.data.detect.tree import MAX_ENTRIES, Tree, scan
from samexp.data.files import shown

__all__ = ["FAMILIES", "Reading", "candidates", "detect", "scan"]

logger = logging.getLogger(__name__)

# every family of layouts, in the order readings are listed
FAMILIES: dict[str, Callable[[Tree], list[Reading]]] = {
    "coco": coco.readings,
    "yolo": yolo.readings,
    "labelme": labelme.readings,
    "masks": masks.readings,
}
_LISTED = 8  # folder and file names a "nothing recognised" message lists


def candidates(root: str | Path, tree: Tree | None = None) -> list[Reading]:
    """Every reading of the folder (refused ones too), with no choice made."""
    tree = tree or scan(root)
    found = [r for read in FAMILIES.values() for r in read(tree)]
    top = tree.get(".")
    if not found and len(top.dirs) == 1 and not top.images and not top.with_suffix(".json"):
        inner = tree.root / top.dirs[0]  # an archive's one folder: the data is inside
        found = candidates(inner)
        for r in found:
            r.why.insert(0, f"the root holds only {top.dirs[0]}/: read inside it")
    return found


def detect(root: str | Path, prefer: str | None = None, tree: Tree | None = None) -> Reading:
    """The one reading of `root` (of format `prefer` when given), or a DatasetError that lists
    what was found and the override that picks each."""
    tree = tree or scan(root)
    found = candidates(root, tree)
    shown_root = shown(tree.root.resolve())
    if prefer is not None:
        kept = [r for r in found if r.format == prefer]
        if not kept:
            seen = ", ".join(sorted({r.format for r in found})) or "no format"
            raise DatasetError(
                f"dataset.prefer={prefer}: {shown_root} does not read as {prefer} (found: {seen}); "
                f"{_nothing_hint(tree) if not found else 'drop dataset.prefer or name one found'}"
            )
        found = kept
    loadable = [r for r in found if r.refusal is None]
    if not loadable:
        if found:
            raise DatasetError(found[0].refusal)
        raise DatasetError(f"no dataset layout recognised in {shown_root}: {_nothing_hint(tree)}")
    if len(loadable) > 1:
        raise DatasetError(_ambiguous(shown_root, loadable))
    reading = loadable[0]
    if tree.truncated:
        reading.notes.append(f"only the first {MAX_ENTRIES:,} names under the root were looked at")
    return reading


def _ambiguous(root: str, readings: list[Reading]) -> str:
    formats = [r.format for r in readings]
    listed = "; ".join(
        f"({i}) {r.describe()}: "
        + (f"dataset=auto dataset.prefer={r.format}, or " if formats.count(r.format) == 1 else "")
        + r.line()
        for i, r in enumerate(readings, 1)
    )
    return f"{root} can be read {len(readings)} ways, and dataset=auto will not guess: {listed}"


def _nothing_hint(tree: Tree) -> str:
    top = tree.get(".")
    names = [f"{d}/" for d in top.dirs] + top.files
    shown_names = first_few([shown(n) for n in names], _LISTED)
    return (
        f"it holds {shown_names or 'nothing'}; expected COCO JSON, YOLO images/ + labels/, "
        f"LabelMe JSON per image, or images with masks or label maps (docs: data-formats); "
        f"name the format and its folders: dataset=folder|labelmap|coco|yolo|labelme "
        f"dataset.root=... dataset.images_dir=..."
    )
