"""What layout detection answers: a reading of a folder as one format, written as the explicit
overrides that load it (so a user can pin them), with the evidence that led there."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samexp.data.split_folders import SPLIT_ALIASES

_PLAIN = re.compile(r"[A-Za-z0-9_./:@+-]+")  # an override value Hydra and a shell read unquoted
_SPLITS = tuple(names[0] for names in SPLIT_ALIASES)  # train, val, test


def ordered(found: dict[str, str]) -> dict[str, str]:
    """Split names in train, val, test order."""
    return {s: found[s] for s in _SPLITS if s in found}


def split_arguments(found: dict[str, str]) -> dict[str, str | None]:
    """`train_split`/`val_split`/`test_split` from the split names found ({'train': 'training',
    'val': 'valid'}), by the rule every format follows: with train and val but no test, val is
    what is evaluated (the test split) and validation is carved from train; with train alone,
    the test split is held out of train (`test_split: null`)."""
    train, val, test = found.get("train", "."), found.get("val"), found.get("test")
    if test is None and val is not None:
        val, test = None, val
    out: dict[str, str | None] = {"train_split": train, "test_split": test}
    if val is not None:
        out["val_split"] = val
    return out


def value_text(value: Any) -> str:
    """A value as a Hydra override writes it: null, true, 3, images, or "images/{split}"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    if isinstance(value, int | float) or _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Reading:
    """One way to load a folder: `format` (a `dataset=` option) and the factory `arguments`
    beyond the root (`{"images_dir": "JPEGImages", "test_split": None}`), `why` it was read so,
    and `rank`: a higher-ranked reading wins; two at the top rank are a refusal."""

    format: str
    root: Path
    arguments: dict[str, Any]
    why: list[str] = field(default_factory=list)
    rank: int = 0
    notes: list[str] = field(default_factory=list)  # said with the reading (warnings, caveats)
    # set when the folder is recognised but cannot be loaded (a YOLO detection export): why
    refusal: str | None = None
    # what the family found on the way (pairs, parsed files), for `inspect` to count from
    found: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def overrides(self) -> dict[str, Any]:
        """{"dataset": "labelmap", "dataset.root": "/data/voc", "dataset.images_dir": ...}."""
        return {
            "dataset": self.format,
            "dataset.root": str(self.root),
            **{f"dataset.{k}": v for k, v in self.arguments.items()},
        }

    def line(self) -> str:
        """The overrides as one command-line fragment, quoted for a POSIX shell and for Hydra."""
        tokens = [f"{key}={value_text(value)}" for key, value in self.overrides.items()]
        return " ".join(shlex.quote(t) for t in tokens)

    def describe(self) -> str:
        return f"{self.format}: {'; '.join(self.why)}"
