"""What a JSON file is, from its first bytes: a COCO file, a LabelMe file, or neither. Reading a
head is enough (LabelMe writes `shapes` near the top; COCO's lists follow a short `info`), so a
folder of 10,000 LabelMe files is told by a few of them, and no file is parsed to be classified."""

from __future__ import annotations

import re
from pathlib import Path

HEAD = 64 * 1024
_LABELME = re.compile(rb'"(shapes|imagePath)"\s*:')
_COCO = re.compile(rb'"(images|annotations|categories)"\s*:\s*\[')


def json_kind(path: Path) -> str | None:
    """'coco', 'labelme' or None (not JSON of either, or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD)
    except OSError:
        return None
    if not head.lstrip().startswith(b"{"):
        return None
    if _LABELME.search(head):
        return "labelme"
    if _COCO.search(head):
        return "coco"
    return None
