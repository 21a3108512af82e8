"""Prompts for a folder of images from one JSON file (`prompts=boxes.json`), a prompt per image.

Two forms are read, told apart by their top level:
- COCO-style, as annotation tools and detectors export it: `images` (`id`, `file_name`) and
  `annotations` (`image_id`, `bbox` = [x, y, width, height]); every box is one prompt;
- `{file: [[x0, y0, x1, y1], ...]}`, or `{file: {"boxes": [...], "points": [[x, y], ...],
  "labels": [1, 0, ...]}}` for points (with or without boxes), as `prompt.*` takes them.
A file is named by its name (`photo.jpg`), its path as written, or its stem (`photo`). The whole
file is checked before a model is built: every entry as `prompt.*` values are, then against the
size of each image it names (`PromptFile.fit`); all the problems are refused in one message
naming the file and each entry (`entry 2 ('b.jpg'): boxes[0]=...`), never halfway through a folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from samexp.config.errors import SamexpError
from samexp.config.limits import JSON_BYTES, read_bytes
from samexp.predict.prompts import Prompts, echo, fit_images, parse_prompts, refuse

_KEYS = ("boxes", "points", "labels")


@dataclass(frozen=True)
class PromptFile:
    path: Path
    entries: dict[str, Prompts]  # as the file names them; the entries without a problem
    index: dict[str, str]  # each entry's name and base name -> the entry (all of them)
    problems: list[str] = dataclasses.field(default_factory=list)  # one line per bad entry

    def entry_for(self, image: Path) -> str | None:
        for key in (image.name, str(image), image.stem):
            if key in self.index:
                return self.index[key]
        return None

    def for_image(self, image: Path) -> Prompts | None:
        """The prompts written for `image`, or None when the file has none for it."""
        entry = self.entry_for(image)
        return None if entry is None else self.entries.get(entry)

    def fit(self, shapes: dict[Path, tuple[int, int]]) -> dict[Path, Prompts]:
        """The prompts of each image of `shapes` ((H, W)) that has an entry, fitted to its size
        (`fit_images`): every problem of the file, its entries' and their bounds', refused here
        in one message."""
        return fit_images(shapes, self.for_image, f"prompts={self.path}: ", self.problems)

    def unused(self, images: list[Path]) -> list[str]:
        """Entries that name none of `images` (a typo, another folder)."""
        return sorted(set(self.index.values()) - {self.entry_for(image) for image in images})


def read_prompt_file(path: str | Path) -> PromptFile:
    """`load_prompt_file`, refusing the problems of its entries at once."""
    prompts = load_prompt_file(path)
    refuse(prompts.problems, f"prompts={prompts.path}: ")
    return prompts


def load_prompt_file(path: str | Path) -> PromptFile:
    """The file's entries; a file that is not one (not JSON, no entry) is refused, and every bad
    entry is kept as a problem line (`PromptFile.problems`) so that all of them are said at once."""
    path = Path(path)
    if not path.is_file():
        raise SamexpError(f"prompts={path}: no such file")
    try:
        data = json.loads(read_bytes(path, JSON_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise SamexpError(f"prompts={path} is not a readable JSON file ({e})") from None
    problems: list[str] = []
    if isinstance(data, dict) and "annotations" in data and "images" in data:
        raw = _from_coco(data, path, problems)
    elif isinstance(data, dict):
        raw = {str(k): v for k, v in data.items()}
    else:
        raise SamexpError(
            f"prompts={path}: expected an object, either COCO-style (images, annotations with "
            f"bbox) or {{file: [[x0, y0, x1, y1], ...]}}; got a {type(data).__name__}"
        )
    if not raw:
        refuse(problems, f"prompts={path}: ")
        raise SamexpError(f"prompts={path} holds no prompt")
    entries = {}
    for number, (name, entry) in enumerate(raw.items(), 1):
        try:
            entries[name] = _parsed(entry, f"entry {number} ({name!r})")
        except SamexpError as e:
            problems.append(str(e))
    index = {PurePosixPath(name).name: name for name in raw}  # `JPEGImages/x.jpg` is x.jpg
    index.update({name: name for name in raw})
    return PromptFile(path, entries, index, problems)


def _from_coco(data: dict, path: Path, problems: list[str]) -> dict[str, Any]:
    """Boxes by file name; a bad annotation is a line in `problems`."""
    images, annotations = data.get("images"), data.get("annotations")
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise SamexpError(f"prompts={path}: COCO `images` and `annotations` must be lists")
    names = {}
    for image in images:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise SamexpError(f"prompts={path}: every COCO image needs an id and a file_name")
        names[image["id"]] = str(image["file_name"])
    boxes: dict[str, list] = {}
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            problems.append(f"{where}: its image_id names no image of the file")
            continue
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            problems.append(f"{where}: bbox must be [x, y, width, height], got {echo(box)}")
            continue
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError):
            problems.append(f"{where}: bbox must be 4 numbers, got {echo(box)}")
            continue
        boxes.setdefault(names[ann["image_id"]], []).append([x, y, x + w, y + h])
    return boxes


def _parsed(entry: Any, where: str) -> Prompts:
    if isinstance(entry, list):
        entry = {"boxes": entry}
    if not isinstance(entry, dict) or not set(entry) <= set(_KEYS):
        raise SamexpError(
            f"{where}: expected [[x0, y0, x1, y1], ...] or an object with {', '.join(_KEYS)}"
        )
    try:
        prompts = parse_prompts(None, entry.get("boxes"), entry.get("points"), entry.get("labels"))
    except SamexpError as e:  # the same checks as on the command line, placed in the file
        raise SamexpError(f"{where}: {str(e).replace('prompt.', '')}") from None
    return dataclasses.replace(prompts, origin=f"{where}: ")
