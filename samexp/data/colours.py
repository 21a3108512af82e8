"""Colour label maps: which RGB colour is which class, from a colour table, and an RGB label
turned into class ids by it (an unknown colour is an error naming the file and the colour).

    labelmap.txt      CVAT's "Segmentation mask" export: `# label:color_rgb:parts:actions`, then
                      `name:r,g,b:parts:actions` per class (`background:0,0,0::`); id = row from 0
    class_dict.csv    `name,r,g,b` header, then `Sky,128,128,128` rows (CamVid); id = row from 0

A one-channel label with a colour table holds the ids themselves (CVAT imports grayscale masks
so); a palette PNG is read by its colours, which are what the table names.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from samexp.config.errors import DatasetError

Colour = tuple[int, int, int]
_CVAT_LINE = re.compile(r"[^:#][^:]*:\s*\d+\s*,\s*\d+\s*,\s*\d+\s*(:|$)")
_CSV_HEADER = ["name", "r", "g", "b"]
_LISTED = 5  # unknown colours a message names


def is_colour_table(first_line: str) -> bool:
    """Whether a class list's first line (neither blank nor a comment) starts a colour table."""
    fields = [f.strip().lower() for f in next(csv.reader([first_line]))]
    return fields == _CSV_HEADER or bool(_CVAT_LINE.match(first_line.strip()))


def colour_rows(path: Path, lines: list[str]) -> list[tuple[int, int, str, Colour]]:
    """(line number, id, name, colour) per class of a colour table; ids are row numbers from 0."""
    rows = []
    header = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if header is None:
            header = [f.strip().lower() for f in next(csv.reader([line]))] == _CSV_HEADER
            if header:
                continue
        if header:
            fields = [f.strip() for f in next(csv.reader([line]))]
            name, values = (fields[0], fields[1:]) if len(fields) == 4 else ("", [])
            expected = "`name,r,g,b` (e.g. `Sky,128,128,128`) under the `name,r,g,b` header"
        else:
            name, _, rest = line.partition(":")
            values = [v.strip() for v in rest.split(":", 1)[0].split(",")]
            expected = "`name:r,g,b::` (e.g. `cat:250,50,83::`), CVAT's labelmap.txt"
        name = name.strip()
        if not name or len(values) != 3 or not all(v.isascii() and v.isdigit() for v in values):
            raise DatasetError(f"{path}, line {number}: expected {expected}, got {line!r}")
        colour = tuple(int(v) for v in values)
        if max(colour) > 255:
            raise DatasetError(f"{path}, line {number}: colour {colour} is not 8-bit RGB (0-255)")
        rows.append((number, len(rows), name, colour))
    return rows


def colour_table(path: Path, rows: list[tuple[int, int, str, Colour]]) -> dict[Colour, int]:
    """colour -> id; two classes of one colour are an error (a pixel would be both)."""
    table: dict[Colour, int] = {}
    names = {class_id: name for _, class_id, name, _ in rows}
    for number, class_id, name, colour in rows:
        if colour in table:
            raise DatasetError(
                f"{path}, line {number}: colour {colour} of {name!r} is also "
                f"{names[table[colour]]!r}'s; each class needs its own colour"
            )
        table[colour] = class_id
    return table


def colours_to_ids(
    rgb: np.ndarray, table: dict[Colour, int], path: str, table_path: Path
) -> np.ndarray:
    """H×W class ids (uint16) of an H×W×3 RGB label; a colour the table lacks is an error."""
    rgb = rgb.astype(np.uint32)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    found, inverse = np.unique(codes, return_inverse=True)
    colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in found.tolist()]
    unknown = [c for c in colours if c not in table]
    if unknown:
        named = ", ".join(map(str, unknown[:_LISTED])) + (" ..." if len(unknown) > _LISTED else "")
        raise DatasetError(
            f"{path}: colour(s) {named} (RGB) are not in the colour table {table_path}; add "
            f"them as classes (`name:r,g,b::` lines) or fix the label map"
        )
    ids = np.array([table[c] for c in colours], dtype=np.uint16)
    return ids[inverse].reshape(codes.shape)
