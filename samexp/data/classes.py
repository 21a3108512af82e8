"""The class list of a label-map dataset: which pixel value (or colour) is which class, read from
any of the usual files (format detected from the content), and which classes become targets.

    classes.txt       `id name` per line (`0 background`, `1 cat`); `#` comments, blank lines
    class_names.txt   one name per line, id = line number from 0 (LabelMe's labelme2voc output);
                      a first line `__ignore__` (LabelMe's labels.txt) is id -1, so ids start at 0
                      on the next line: `_background_` is 0 either way
    _classes.csv      Roboflow's `Pixel Value, Class` header, then `0, background` rows
    labelmap.txt      a colour table (CVAT's `name:r,g,b::`, CamVid's class_dict.csv): labels
                      are RGB colours, each a class (`samexp.data.colours`)

Detection: the first line that is neither blank nor a `#` comment decides. A colour table's
line or header means a colour table; the CSV header means CSV; `<integer> <name>` means
`id name`; anything else means one name per line. Not in the root: a class list found in every
split folder alike (Roboflow writes `train/_classes.csv`, `valid/_classes.csv`) is used.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from samexp.config.errors import DatasetError
from samexp.config.limits import TEXT_BYTES, read_bytes, read_lines
from samexp.data.colours import Colour, colour_rows, colour_table, is_colour_table
from samexp.data.splits import require_dataset_root

logger = logging.getLogger(__name__)

# looked for in the root (then in its folders): `id name`, a name per line, Roboflow's CSV, and
# colour tables: CVAT's "Segmentation mask" export, CamVid's
DEFAULT_FILES = ("classes.txt", "class_names.txt", "_classes.csv", "labelmap.txt", "class_dict.csv")
MAX_ID = 65535  # labels are 8- or 16-bit PNGs
DEFAULT_BACKGROUND = (0,)  # background_ids when the config leaves them unset
_CSV_HEADER = ["pixel value", "class"]
_ID_NAME = re.compile(r"\d+\s+\S")  # what starts an `id name` line
_NUMBERED = re.compile(r"\d+\s*[,;\s]\s*\S")  # `1 cat`, `1,cat`: never a bare name's line
_LABELME_IGNORE = "__ignore__"  # labels.txt's id -1, which labelme saves as 255 in 8-bit PNGs
# names that say "no class here", compared lowercase without spaces, '_' and '-'
_UNLABELLED = frozenset({"void", "unlabelled", "unlabeled", "ignore", "background"})
_FORMATS = (
    "classes.txt (`id name` per line), class_names.txt (one name per line, id = line number "
    "from 0), _classes.csv (Roboflow's `Pixel Value, Class`) or a colour table (labelmap.txt: "
    "`name:r,g,b::` per line, CVAT)"
)


def find_classes_file(root: Path, classes_file: str | None) -> Path:
    """`classes_file` under `root` when given, else the one default file the root holds (or,
    when it holds none, its folders)."""
    if classes_file is not None:
        path = root / classes_file
        if not path.is_file():
            raise DatasetError(
                f"classes file {path} does not exist; fix dataset.classes_file, or unset it to "
                f"use the class list in {root}: {_FORMATS}"
            )
        return path
    found = [root / name for name in DEFAULT_FILES if (root / name).is_file()]
    if not found:
        return _in_split_folders(root)
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise DatasetError(
            f"{root} holds several class lists ({names}); set dataset.classes_file to the one "
            f"to use (e.g. dataset.classes_file={found[0].name})"
        )
    return found[0]


def has_class_list(root: Path) -> bool:
    """Whether the root, or one of its folders, holds one of the default class lists."""
    folders = [root, *(p for p in root.iterdir() if p.is_dir())]
    return any((f / name).is_file() for f in folders for name in DEFAULT_FILES)


def _in_split_folders(root: Path) -> Path:
    """The class list the root's folders hold, when they all hold the same one (Roboflow's
    `train/_classes.csv`, `valid/_classes.csv`); different lists are an error naming them."""
    folders = [p for p in root.iterdir() if p.is_dir()]
    found = sorted(f / name for f in folders for name in DEFAULT_FILES if (f / name).is_file())
    if not found:
        raise DatasetError(
            f"{root} holds no class list; write {_FORMATS}, or point dataset.classes_file at one"
        )
    texts = {read_bytes(p, TEXT_BYTES) for p in found}
    if len(texts) > 1:
        named = ", ".join(str(p.relative_to(root)) for p in found)
        raise DatasetError(
            f"the folders of {root} hold different class lists ({named}); a run has one: set "
            f"dataset.classes_file to the one to use (e.g. "
            f"dataset.classes_file={found[0].relative_to(root).as_posix()})"
        )
    logger.info("%s: class list %s (its folders all hold it)", root, found[0].relative_to(root))
    return found[0]


def _looks_unlabelled(name: str) -> bool:
    return re.sub(r"[\s_-]+", "", name).lower() in _UNLABELLED


def _id_name_fields(line: str) -> list[str]:
    return line.split("#", 1)[0].split(maxsplit=1)  # names may hold spaces


def _csv_fields(line: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([line], skipinitialspace=True))]


def _numbered_rows(
    path: Path, lines: list[str], fields_of: Callable[[str], list[str]], expected: str,
    header: bool = False,
) -> list[tuple[int, int, str]]:  # fmt: skip
    """(line number, id, name) of each line that is not blank, a `#` comment or the header."""
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.split("#", 1)[0].strip():
            continue
        if header:  # the first such line, as `read_classes` recognised it
            header = False
            continue
        fields = [f.strip() for f in fields_of(raw)]
        if len(fields) != 2 or not (fields[0].isascii() and fields[0].isdigit()) or not fields[1]:
            raise DatasetError(f"{path}, line {number}: expected {expected}, got {raw.strip()!r}")
        rows.append((number, int(fields[0]), fields[1]))
    return rows


def _name_rows(path: Path, lines: list[str]) -> list[tuple[int, int, str]]:
    """Line i (from 0) is id i; LabelMe's labels.txt starts with `__ignore__`, id -1."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    shift = 1 if lines and lines[0].strip() == _LABELME_IGNORE else 0
    if shift:
        logger.info(
            "%s: line 1 is LabelMe's %s (id -1, saved as 255 in its PNGs: the default "
            "ignore_index), so line 2 is id 0",
            path, _LABELME_IGNORE,
        )  # fmt: skip
    rows = []
    for index, raw in enumerate(lines[shift:], start=shift):
        number, name = index + 1, raw.strip()
        where = f"{path}, line {number}"
        if not name or name.startswith("#"):
            what = "is blank" if not name else "is a comment"
            raise DatasetError(
                f"{where} {what}: in a one-name-per-line class list each line's number is its "
                f"id, so it would shift the ids below it; remove it (or write `id name` lines)"
            )
        if _NUMBERED.match(name):
            raise DatasetError(
                f"{where}: {name!r} looks like an id and a name, but line {shift + 1} is a bare "
                f"name ({lines[shift].strip()!r}); use one format: `id name` on every line, "
                f"`Pixel Value, Class` then `id, name` rows, or one name per line"
            )
        rows.append((number, index - shift, name))
    return rows


def read_classes(path: Path) -> dict[int, str]:
    """{id: name} from any of the formats (module docstring): ids unique and 16-bit, names
    unique; every problem is one error naming the file and line."""
    return read_class_table(path)[0]


def read_class_table(path: Path) -> tuple[dict[int, str], dict[Colour, int] | None]:
    """{id: name}, and {colour: id} when the file is a colour table (else None)."""
    if not path.is_file():
        raise DatasetError(
            f"classes file {path} does not exist; write one ({_FORMATS}) or point "
            f"dataset.classes_file at it"
        )
    lines = read_lines(path)
    first = next((s for s in map(str.strip, lines) if s and not s.startswith("#")), None)
    if first is None:
        raise DatasetError(f"{path} lists no classes; write {_FORMATS}")
    colours = None
    if is_colour_table(first):
        coloured = colour_rows(path, lines)
        colours = colour_table(path, coloured)
        rows = [(number, class_id, name) for number, class_id, name, _ in coloured]
    elif [f.lower() for f in _csv_fields(first)] == _CSV_HEADER:
        expected = "`pixel value, class` (e.g. `1, cat`) under the `Pixel Value, Class` header"
        rows = _numbered_rows(path, lines, _csv_fields, expected, header=True)
    elif path.suffix.lower() == ".csv":
        raise DatasetError(
            f"{path}: a CSV class list starts with the header `Pixel Value, Class` (Roboflow's "
            f"_classes.csv), got {first!r}; add the header or use classes.txt (`id name` lines)"
        )
    elif _ID_NAME.match(first):
        expected = "`id name` (e.g. `1 cat`) like the lines above it"
        rows = _numbered_rows(path, lines, _id_name_fields, expected)
    else:
        rows = _name_rows(path, lines)
    classes: dict[int, str] = {}
    for number, class_id, name in rows:
        where = f"{path}, line {number}"
        if class_id > MAX_ID:
            raise DatasetError(f"{where}: id {class_id} does not fit a 16-bit label (max {MAX_ID})")
        if class_id in classes:
            raise DatasetError(
                f"{where}: id {class_id} is listed twice ({classes[class_id]!r} and {name!r})"
            )
        if name in classes.values():
            raise DatasetError(f"{where}: class name {name!r} is listed twice; names must differ")
        classes[class_id] = name
    if not classes:
        raise DatasetError(f"{path} lists no classes; write {_FORMATS}")
    return classes, colours


@dataclass(frozen=True)
class LabelClasses:
    """What a label map's pixel values mean for a run."""

    path: Path | None  # the class list they came from, named in messages; None: `by_id`
    targets: dict[int, str]  # id -> name of each class segmented (and scored)
    known: frozenset[int]  # every id a label may hold: listed, background or ignore
    colours: dict[Colour, int] | None = None  # a colour table's colour -> id: RGB labels
    # no class list: every id the labels hold, but background and ignore, is a class named by
    # its id, added to `targets` as labels are read (all splits share the one dict)
    by_id: bool = False

    def admit(self, ids: Iterable[int]) -> None:
        """With `by_id`, make the ids a label holds classes (background and ignore aside)."""
        if self.by_id:
            for i in ids:
                if i not in self.known:
                    self.targets.setdefault(i, str(i))


def label_classes(
    root: str | Path,
    classes_file: str | None = None,
    background_ids: Iterable[int] | None = None,
    ignore_index: int | None = 255,
) -> LabelClasses:
    """Read the class list and decide the targets: every listed class but the background ids
    (default [0]) and `ignore_index`. Warns once when that choice looks wrong (`_warn_targets`)."""
    base = require_dataset_root(root)
    background = set(DEFAULT_BACKGROUND if background_ids is None else background_ids)
    ignore = {ignore_index} - {None}
    if classes_file is None and not has_class_list(base):
        logger.warning(
            "%s holds no class list: each id its labels hold is a class named by that id (%s "
            "background%s); to name them write %s, or set dataset.classes_file",
            base, ", ".join(map(str, sorted(background))) or "no",
            f", {ignore_index} ignored" if ignore_index is not None else "", _FORMATS,
        )  # fmt: skip
        return LabelClasses(None, {}, frozenset(background | ignore), by_id=True)
    path = find_classes_file(base, classes_file)
    classes, colours = read_class_table(path)
    targets = {i: n for i, n in classes.items() if i not in background | ignore}
    if not targets:
        raise DatasetError(
            f"{path}: every class is background ({sorted(background)}) or ignore_index "
            f"({ignore_index}); list at least one class to segment"
        )
    _warn_targets(path, classes, targets, background, by_default=background_ids is None)
    return LabelClasses(path, targets, frozenset(classes) | background | ignore, colours)


def _warn_targets(
    path: Path, classes: dict[int, str], targets: dict[int, str], background: set[int],
    by_default: bool,
) -> None:  # fmt: skip
    """Two mistakes a class list makes likely, each one warning with the override that fixes
    both: the default background id 0 naming a real class (CamVid's 0 is `Sky`), and a class
    named void / unlabelled / ignore / background that would be segmented as an object."""
    dropped = {
        i: classes[i]
        for i in sorted(background)
        if by_default and i in classes and not _looks_unlabelled(classes[i])
    }
    unlabelled = {i: n for i, n in targets.items() if _looks_unlabelled(n)}
    if not dropped and not unlabelled:
        return
    fix = sorted((background - dropped.keys()) | unlabelled.keys())
    override = f"dataset.background_ids=[{', '.join(map(str, fix))}]"
    if dropped:
        named = ", ".join(f"{i} {n!r}" for i, n in dropped.items())
        logger.warning(
            "%s: the default dataset.background_ids=[0] leaves out class %s: it is never "
            "segmented nor scored; if it is a class, set %s (or the id of your background)",
            path, named, override,
        )  # fmt: skip
    if unlabelled:
        named = ", ".join(f"{i} {n!r}" for i, n in unlabelled.items())
        logger.warning(
            "%s: class %s will be segmented and scored like an object (it is not in "
            "dataset.background_ids); to leave it out, set %s",
            path, named, override,
        )  # fmt: skip
