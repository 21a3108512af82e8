"""Which files of two folders (or of one) are images and masks of each other, by name: the stems
less a suffix on either side, as `samexp.data.pairing` will pair them when the data loads."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# what annotation tools and public datasets append to a mask's stem
MASK_SUFFIXES = ("_mask", "_masks", "-mask", "_manual1", "_segmentation", "_Segmentation", "_gt",
                 "_GT", "_label", "_labels", "_seg", "_L", "_anno", "_annotation")  # fmt: skip
_TAIL = re.compile(
    r"[_-][A-Za-z][A-Za-z0-9]*$"
)  # a stem's last `_word`: `21_training` -> _training
_IMAGE_ONLY = (".jpg", ".jpeg")  # never a side-by-side mask


@dataclass(frozen=True)
class Match:
    image_suffix: str
    mask_suffix: str
    pairs: dict[str, tuple[str, str]]  # name -> (image file, mask file)
    lonely_images: int
    lonely_masks: int

    @property
    def complete(self) -> bool:
        return not self.lonely_images and not self.lonely_masks


def stems(names: list[str]) -> dict[str, str]:
    return {os.path.splitext(n)[0]: n for n in names}


def common_tail(stems_: list[str]) -> str | None:
    """The `_word` every stem ends with (DRIVE's `_training`, Carvana's `_mask`), if one."""
    tails = {m.group(0) if (m := _TAIL.search(s)) else None for s in stems_}
    tail = tails.pop() if len(tails) == 1 else None
    return tail if tail and not all(s == tail for s in stems_) else None


def _cut(by_stem: dict[str, str], suffix: str) -> dict[str, str] | None:
    if not suffix:
        return by_stem
    if not all(s.endswith(suffix) and s != suffix for s in by_stem):
        return None
    return {s[: -len(suffix)]: n for s, n in by_stem.items()}


def match(images: list[str], masks: list[str]) -> Match | None:
    """The suffixes that pair the most images with masks (at least half of them), or None."""
    image_stems, mask_stems = stems(images), stems(masks)
    if not image_stems or not mask_stems:
        return None
    image_tail, mask_tail = common_tail(list(image_stems)), common_tail(list(mask_stems))
    best = None
    for image_suffix in dict.fromkeys(("", image_tail or "")):
        cut_images = _cut(image_stems, image_suffix)
        for mask_suffix in dict.fromkeys(("", mask_tail or "", *MASK_SUFFIXES)):
            cut_masks = _cut(mask_stems, mask_suffix) if cut_images is not None else None
            if cut_masks is None:
                continue
            names = cut_images.keys() & cut_masks.keys()
            if best is None or len(names) > len(best.pairs):
                best = Match(image_suffix, mask_suffix,
                             {n: (cut_images[n], cut_masks[n]) for n in sorted(names)},
                             len(cut_images) - len(names), len(cut_masks) - len(names))  # fmt: skip
    if best is None or len(best.pairs) * 2 < len(image_stems):
        return None
    return best


def side_by_side(files: list[str]) -> Match | None:
    """Images and masks in one folder, masks named `<image stem><suffix>` (`x.jpg`, `x_mask.png`)."""
    by_stem = stems(files)
    for suffix in MASK_SUFFIXES:
        masks = [n for s, n in by_stem.items() if s.endswith(suffix) and s != suffix
                 and not n.lower().endswith(_IMAGE_ONLY)]  # fmt: skip
        if not masks:
            continue
        chosen = set(masks)
        found = match([n for n in files if n not in chosen], masks)
        if found is not None and found.mask_suffix == suffix and not found.image_suffix:
            return found
    return None
