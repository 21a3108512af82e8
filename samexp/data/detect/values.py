"""What a few masks hold: the pixel values of a bounded sample of mask files (never every mask),
read as the label-map and folder formats read them, and what those values suggest."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samexp.config.errors import DatasetError
from samexp.data.files import open_image, read_image_bytes, shown
from samexp.data.folder import MASK_THRESHOLD

SAMPLE = 20  # masks read to tell binary masks from class ids, and for inspect's histogram
_JPEG = (".jpg", ".jpeg")


def sample(paths: list[Path], n: int = SAMPLE) -> list[Path]:
    """`n` of `paths`, evenly spread over the sorted list: the same files on every call."""
    ordered = sorted(paths)
    if len(ordered) <= n:
        return ordered
    return [ordered[i * len(ordered) // n] for i in range(n)]


@dataclass
class MaskValues:
    """The values of the sampled masks: a histogram of gray values (palette indices for 'P'
    PNGs), and the colours when masks are RGB."""

    read: int = 0  # masks read
    of: int = 0  # masks there are
    histogram: Counter[int] = field(default_factory=Counter)  # value -> pixels
    present: Counter[int] = field(default_factory=Counter)  # value -> masks holding it
    colours: Counter[tuple[int, int, int]] = field(default_factory=Counter)  # RGB masks only
    modes: set[str] = field(default_factory=set)  # PIL modes seen: P, L, I;16, RGB, ...
    jpeg: bool = False  # lossy masks: values near a level are that level
    unreadable: list[str] = field(default_factory=list)

    def count(self, array: np.ndarray) -> None:
        """Add one mask's values (`array`: the values as read, one per pixel)."""
        self.read += 1
        values, counts = np.unique(array, return_counts=True)
        self.histogram.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
        self.present.update(values.tolist())

    def levels(self) -> list[int]:
        """The values that are not noise: each holds ≥ 0.1% of the pixels (JPEG spreads a level
        over neighbouring values; a lossless mask's values are all kept)."""
        total = sum(self.histogram.values())
        if not self.jpeg:
            return sorted(self.histogram)
        h = self.histogram
        return sorted(v for v, c in h.items() if c >= 0.001 * total
                      and all(c >= h.get(u, 0) for u in range(v - 4, v + 5)))  # fmt: skip

    def kind(self) -> tuple[str, str]:
        """('folder' | 'labelmap' | 'colour', why): binary masks, class ids, or RGB colours."""
        if self.colours and len(self.colours) > 2 and not self.jpeg:
            named = ", ".join(f"{c}" for c, _ in self.colours.most_common(4))
            return "colour", f"RGB masks with {len(self.colours)} colours ({named} ...)"
        levels = self.levels()
        if self.jpeg:
            return "folder", f"JPEG masks (lossy: read as binary), levels {_short(levels)}"
        nonzero = [v for v in levels if v]
        if len(nonzero) <= 1:
            return "folder", f"values {_short(levels)}: binary masks"
        return "labelmap", f"values {_short(levels)}: several class ids"

    def threshold(self) -> int | None:
        """A `mask_threshold` the folder format needs: 0 when the foreground is dim ({0, 1})."""
        nonzero = [v for v in self.levels() if v]
        return 0 if nonzero and max(nonzero) <= MASK_THRESHOLD else None


def _short(values: list[int], n: int = 8) -> str:
    return "{" + ", ".join(map(str, values[:n])) + (", ..." if len(values) > n else "") + "}"


def read_values(
    paths: list[Path], n: int = SAMPLE, read: Callable[[Path], np.ndarray] | None = None
) -> MaskValues:
    """The values of `n` of the masks at `paths` (see `sample`); an unreadable one is named.
    `read` decodes one mask as a loader does (`labelmap.read_label`: colours mapped to ids);
    unset, the values are the stored ones, gray or RGB, what detection tells formats by."""
    out = MaskValues(of=len(paths))
    for path in sample(paths, n):
        try:
            if read is None:
                _add(out, path)
            else:
                out.count(read(path))
        except DatasetError as e:
            out.unreadable.append(str(e))
    return out


def merged(parts: Iterable[MaskValues]) -> MaskValues:
    """One MaskValues of several (the splits' samples), counts added."""
    out = MaskValues()
    for part in parts:
        out.read, out.of, out.jpeg = out.read + part.read, out.of + part.of, out.jpeg or part.jpeg
        out.histogram.update(part.histogram)
        out.present.update(part.present)
        out.colours.update(part.colours)
        out.modes |= part.modes
        out.unreadable += part.unreadable
    return out


def _add(out: MaskValues, path: Path) -> None:
    data = read_image_bytes(path)
    try:
        with open_image(io.BytesIO(data), path) as image:
            out.modes.add(image.mode)
            if image.mode in ("P", "1", "L", "I;16", "I;16B", "I;16L", "I"):
                if path.suffix.lower() == ".gif" and image.mode == "P":
                    # a GIF is always paletted: its colours are the mask, not class ids
                    array = np.asarray(image.convert("L"))
                else:
                    array = np.asarray(image)
            else:
                array = np.asarray(image.convert("RGB"))
    except DatasetError:
        raise
    except Exception as e:  # PIL raises several types for bad files; all mean "unreadable"
        raise DatasetError(f"{shown(path)}: cannot be read as an image ({e})") from e
    lossy = path.suffix.lower() in _JPEG
    out.jpeg = out.jpeg or lossy
    if array.ndim == 3:
        flat = array.reshape(-1, 3)
        if lossy:  # its colours are noise around the levels
            array = flat.max(axis=1)
        elif (flat == flat[:, :1]).all():  # gray stored as RGB
            array = array[..., 0]
        else:
            colours, counts = np.unique(flat, axis=0, return_counts=True)
            out.colours.update(
                {tuple(map(int, c)): int(k) for c, k in zip(colours, counts, strict=True)}
            )
            array = flat.max(axis=1)  # as the folder format reads it
    out.count(array)
