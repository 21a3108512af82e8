"""How much one file may make samexp allocate, and the readers that hold files to it.

Dataset files, class lists and prompt files may come from anyone (a download, a colleague's
export); a few hundred bytes of YAML aliases or a PNG header claiming 10⁵×10⁵ pixels would
otherwise grow memory until the machine gives out. Every limit is here, generous for real data
(COCO train2017: 448 MB, 860k annotations, at most a few hundred per image), and past it the
refusal is one line naming the file, the limit and the `SAMEXP_MAX_*` variable that raises it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any

import yaml

from samexp.config.errors import ConfigValueError, DatasetError


@dataclass(frozen=True)
class Limit:
    """One bound; `SAMEXP_MAX_<NAME>` overrides the default (read when checked, so a test or a
    DataLoader worker sees the value of its environment)."""

    name: str
    default: int
    unit: str  # what is counted, as the refusal says it: "bytes per JSON file"

    @property
    def env(self) -> str:
        return f"SAMEXP_MAX_{self.name.upper()}"

    @property
    def value(self) -> int:
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value <= 0:
            raise ConfigValueError(f"{self.env}={text!r}: must be a positive whole number")
        return value

    def check(self, amount: float, where: str, what: str) -> None:
        """Refuse when `amount` is over the limit; `what` says what was found, e.g. 'image 3 has
        10,001 annotations'."""
        if amount > self.value:
            raise DatasetError(
                f"{where}: {what}; samexp's limit is {self.value:,} {self.unit} "
                f"(set {self.env} to raise it)"
            )


# A JSON file becomes ~7× its size in Python objects while it is parsed (measured: a 74 MB COCO
# file peaks at 530 MB), so this bounds a load at ~15 GB; LVIS v1 train (1.1 GB) still fits.
JSON_BYTES = Limit("json_bytes", 2 * 2**30, "bytes per JSON file")
TEXT_BYTES = Limit(
    "text_bytes", 64 * 2**20, "bytes per text file"
)  # data.yaml, class lists, labels
ANNOTATIONS = Limit("annotations", 2_000_000, "annotations per file")  # LVIS v1 train: 1.27M
INSTANCES_PER_IMAGE = Limit("instances_per_image", 10_000, "instances per image")
# Every instance decodes to a full-size mask when its image is read: 2³² mask pixels are 4 GB.
MASK_PIXELS = Limit("mask_pixels", 2**32, "mask pixels per image (instances × height × width)")
# PIL's own decompression-bomb limit (2 × Image.MAX_IMAGE_PIXELS): 16k × 11k, 537 MB as RGB.
IMAGE_PIXELS = Limit("image_pixels", 178_956_970, "decoded pixels per image")
# pycocotools traces a polygon at 5 points per pixel of its outline (~50 bytes per pixel): a
# 10 kB zigzag across a large image would ask for gigabytes.
POLYGON_OUTLINE = Limit("polygon_outline", 2_000_000, "pixels of polygon outline per annotation")
# An image sent to the served MLflow model (`samexp.predict.serving`), as its encoded file: a
# 24 MP JPEG is ~10 MB, a PNG of it ~40 MB; base64 text is a third more.
REQUEST_IMAGE_BYTES = Limit("request_image_bytes", 64 * 2**20, "bytes per request image")

LIMITS = (JSON_BYTES, TEXT_BYTES, ANNOTATIONS, INSTANCES_PER_IMAGE, MASK_PIXELS, IMAGE_PIXELS,
          POLYGON_OUTLINE, REQUEST_IMAGE_BYTES)  # fmt: skip


def shown(path: str | bytes | PathLike) -> str:
    """A path as text any log or terminal can print: a name's non-UTF-8 bytes appear as \\xff.

    Such names reach Python as lone surrogates, which a UTF-8 log file refuses to write.
    """
    text = os.fsdecode(path)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from a file name's bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_bytes(path: str | PathLike, limit: Limit) -> bytes:
    """The file's bytes, refused past `limit` before they are read (and while: a FIFO or a
    /dev/zero symlink has no size to check first)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            limit.check(size, shown(path), f"the file is {size:,} bytes")
            data = f.read(limit.value + 1)
    except OSError as e:
        raise DatasetError(f"{shown(path)}: cannot be read ({e.strerror or e})") from e
    limit.check(len(data), shown(path), f"reading it gave over {len(data) - 1:,} bytes")
    return data


def read_lines(path: str | PathLike, limit: Limit | None = None) -> list[str]:
    """A text file's lines (class lists, split lists, YOLO labels), bounded by `limit` (default
    TEXT_BYTES); a byte-order mark is not text, and bytes that are not UTF-8 are refused naming
    the file."""
    data = read_bytes(path, TEXT_BYTES if limit is None else limit)
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{shown(path)}: cannot be read as UTF-8 text ({e})") from e


def check_instances(count: int, size: tuple[int, int], where: str, what: str) -> None:
    """Refuse an image whose `count` instances (`what`: 'annotations', 'shapes') are too many,
    or would decode to too many mask pixels at its (H, W) `size`."""
    h, w = size
    INSTANCES_PER_IMAGE.check(count, where, f"{count:,} {what}")
    pixels = count * h * w
    MASK_PIXELS.check(pixels, where, f"{count:,} {what} on {w}×{h} pixels ({pixels:,} mask pixels)")


def load_json(
    path: str | PathLike, limit: Limit = JSON_BYTES, object_hook: Callable | None = None
) -> Any:
    """A JSON file within `limit` bytes; `object_hook` sees every object as it is parsed (where
    a format counts what it allows). Invalid or absurdly nested -> DatasetError naming the file."""
    data = read_bytes(path, limit)
    try:
        return json.loads(data, object_hook=object_hook)
    except ValueError as e:  # JSONDecodeError says "line L column C"; also bad UTF-8
        raise DatasetError(f"{shown(path)}: not valid JSON ({e})") from e
    except RecursionError:
        raise DatasetError(f"{shown(path)}: not valid JSON (nested too deeply)") from None


class _Alias(yaml.YAMLError):
    pass


class _NoAliases(yaml.SafeLoader):
    """A safe loader that stops at the first alias (`*name`, `<<: *name`)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Alias(f"line {self.peek_event().start_mark.line + 1} uses a YAML alias")
        return super().compose_node(parent, index)


def load_yaml(path: str | PathLike) -> Any:
    """A YAML file within the text limit, read safely and without aliases.

    Exporters (Ultralytics, Roboflow, CVAT) never write anchors or aliases, and a few hundred
    bytes of nested aliases expand to billions of values wherever the data is walked (the
    "billion laughs"): refusing every alias is simpler and safer than counting expansions.
    """
    data = read_bytes(path, TEXT_BYTES)
    try:
        return yaml.load(data.decode("utf-8"), Loader=_NoAliases)  # noqa: S506 (a safe loader)
    except _Alias as e:
        raise DatasetError(
            f"{shown(path)}: {e} (*name); samexp reads it without aliases, which a few lines can "
            f"expand to gigabytes: write the values out"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{shown(path)}: not valid YAML ({e})") from e
    except RecursionError:
        raise DatasetError(f"{shown(path)}: not valid YAML (nested too deeply)") from None
