"""LabelMe folders (`dataset=labelme`): one `.json` per image (told by its head: `shapes`,
`imagePath`), in the root (flat) or in split folders; a few files per folder are looked at."""

from __future__ import annotations

import os

from samexp.data.detect.jsonhead import json_kind
from samexp.data.detect.reading import Reading, split_arguments
from samexp.data.detect.tree import Tree
from samexp.data.split_folders import split_of

_LOOKED_AT = 3  # JSON files per folder whose heads are read


def _is_labelme(tree: Tree, rel: str) -> int:
    """How many LabelMe JSONs folder `rel` holds (0 when its first few are not LabelMe's)."""
    folder = tree.get(rel)
    jsons = folder.with_suffix(".json") if folder is not None else []
    # LabelMe names a JSON after its image: other JSONs beside them (a COCO file) are not its
    stems = {os.path.splitext(n)[0] for n in folder.images} if folder is not None else set()
    own = [n for n in jsons if os.path.splitext(n)[0] in stems] or jsons
    heads = [tree.inside(rel, n) for n in own[:_LOOKED_AT]]
    if not own or not all(p is not None and json_kind(p) == "labelme" for p in heads):
        return 0
    return len(own)


def readings(tree: Tree) -> list[Reading]:
    root = tree.get(".")
    splits = {}
    for d in root.dirs:
        if split_of(d) and _is_labelme(tree, d):
            splits.setdefault(split_of(d), d)
    flat = _is_labelme(tree, ".")
    out = []
    if "train" in splits:
        n = sum(_is_labelme(tree, d) for d in splits.values())
        why = [f"{n} LabelMe JSON files in split folders {', '.join(splits.values())}"]
        out.append(Reading("labelme", tree.root, split_arguments(splits), why,
                           found={"folders": list(splits.values())}))  # fmt: skip
    if flat:
        why = [f"{flat} LabelMe JSON files in the root, no split folders"]
        out.append(Reading("labelme", tree.root, split_arguments({"train": "."}), why,
                           found={"folders": ["."]}))  # fmt: skip
    return out
