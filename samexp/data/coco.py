"""The COCO instance-segmentation format: one sample per image, carrying all its instances.

The JSON is checked in full when a split is built (a bad file stops the run before any model is
built, naming the file); masks are kept as compressed RLE and decoded by pycocotools only when a
sample is read.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from samexp.data.base import (
    Sample,
    apply_orientation,
    displayed_shape,
    image_header,
    make_sample,
    read_image_rgb,
)
from samexp.data.splits import DatasetSplits
from samexp.errors import DatasetError

logger = logging.getLogger(__name__)

_SKIPS = ("crowd", "category", "bad_polygon", "small", "no_instances")  # summary() counters


@dataclass
class CocoImage:
    """One image listed in a COCO file: where it is, how to orient it, its kept instances."""

    name: str  # unique within the file: the stem, or file_name with '/' -> '__' if stems collide
    path: Path
    size: tuple[int, int]  # (H, W) of the annotation frame (the displayed image)
    orientation: int = 1  # EXIF orientation applied to the pixels to reach that frame
    rles: list[dict] = field(default_factory=list)  # compressed RLE per kept instance
    categories: list[str] = field(default_factory=list)  # category name per kept instance
    skips: list[tuple[str, str]] = field(default_factory=list)  # (counter, reason) per skip


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"COCO annotations file {path} does not exist; fix the path")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:  # JSONDecodeError says "line L column C"; also bad UTF-8
        raise DatasetError(f"{path}: not valid JSON ({e})") from e
    keys = ("images", "annotations", "categories")
    missing = [k for k in keys if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(
            f"{path}: no {', '.join(repr(k) for k in missing)} list; a COCO file is an object "
            f"with 'images', 'annotations' and 'categories' lists"
        )
    return data


def _orientation_for(
    path: Path, stated: tuple[int, int] | None, json_path: Path
) -> tuple[tuple[int, int], int]:
    """The annotation frame (H, W) and the EXIF orientation that turns the file's pixels into it.

    COCO annotations are in the displayed (EXIF-rotated) frame. A JSON size that matches only the
    stored frame was written by a tool that ignored EXIF: then the pixels are used as stored.
    Only the header is read, so checking a large dataset does not decode every photo.
    """
    stored, orientation = image_header(path)
    displayed = displayed_shape(stored, orientation)
    if stated is None or stated == displayed:
        return displayed, orientation
    if stated == stored:
        return stored, 1
    (h, w), (dh, dw) = stored, displayed
    as_shown = f" ({dw}×{dh} as displayed, EXIF orientation {orientation})" * (orientation > 1)
    raise DatasetError(
        f"{path}: {json_path.name} says it is {stated[1]}×{stated[0]} (W×H) but the file is "
        f"{w}×{h}{as_shown}; fix its 'width'/'height' or re-export the annotations"
    )


def _list_images(data: dict, json_path: Path, images_dir: Path) -> dict[object, CocoImage]:
    """Image id -> CocoImage, after checking every entry and file (see `read_coco`)."""
    images: dict[object, CocoImage] = {}
    ids_by_file: dict[str, object] = {}
    stated: dict[object, tuple[int, int]] = {}  # (H, W) as the JSON says, where it says
    for entry in data["images"]:
        image_id, file_name = entry.get("id"), entry.get("file_name")
        if image_id is None or not isinstance(file_name, str):
            raise DatasetError(f"{json_path}: image entry {entry!r:.80} lacks 'id' or 'file_name'")
        rel = PurePosixPath(file_name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise DatasetError(
                f"{json_path}: image {image_id} has file_name '{file_name}', which is outside "
                f"{images_dir}; use a path relative to that folder"
            )
        if image_id in images or file_name in ids_by_file:
            other = image_id if image_id in images else ids_by_file[file_name]
            raise DatasetError(
                f"{json_path}: image {image_id} ('{file_name}') is listed twice (same id or "
                f"file_name as image {other}); list each image once"
            )
        ids_by_file[file_name] = image_id
        if "height" in entry and "width" in entry:
            stated[image_id] = (entry["height"], entry["width"])
        images[image_id] = CocoImage(rel.stem, images_dir / rel, size=(0, 0))
    missing = [str(p.relative_to(images_dir)) for p in (im.path for im in images.values())
               if not p.is_file()]  # fmt: skip
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) listed in {json_path} are missing from {images_dir}: "
            f"{', '.join(missing[:5])}{' ...' * (len(missing) > 5)}; add them or fix file_name"
        )
    stems = Counter(im.name for im in images.values())
    for image_id, im in images.items():
        if stems[im.name] > 1:  # e.g. a/0001.jpg and b/0001.jpg
            im.name = str(im.path.relative_to(images_dir)).replace("/", "__")
        im.size, im.orientation = _orientation_for(im.path, stated.get(image_id), json_path)
    return images


def _segmentation_rle(ann: dict, size: tuple[int, int], json_path: Path) -> dict | None:
    """One compressed RLE for polygons (merged) or RLE; None for a polygon with < 3 points."""
    seg, (h, w) = ann.get("segmentation"), size
    if isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            return None  # pycocotools would read a 4-number "polygon" as a box
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if list(seg["size"]) != [h, w]:
            raise DatasetError(
                f"{json_path}: annotation {ann.get('id')} has an RLE of size {seg['size']} (H, W) "
                f"but its image is {h}×{w}; the RLE must cover the whole image"
            )
        if isinstance(seg["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(seg, h, w)
        return {"size": [h, w], "counts": seg["counts"]}
    raise DatasetError(
        f"{json_path}: annotation {ann.get('id')} has no usable 'segmentation' "
        f"(polygons or RLE); samexp needs instance masks, not only boxes"
    )


def read_coco(
    annotations: str | Path,
    images_dir: str | Path,
    categories: Sequence[str] | None = None,
    min_area: float = 0.0,
) -> list[CocoImage]:
    """Every image listed in a COCO file, with the instances that can be training targets.

    Crowd annotations (`iscrowd=1`) are not targets: COCO evaluation treats them as regions to
    ignore, not objects to find. They, instances of other categories than `categories`, polygons
    with fewer than 3 points and instances under `min_area` pixels are skipped and recorded.
    """
    json_path, images_dir = Path(annotations), Path(images_dir)
    data = _load_json(json_path)
    names = {c.get("id"): str(c.get("name")) for c in data["categories"]}
    keep = set(categories) if categories is not None else None
    if keep is not None and keep - set(names.values()):
        raise DatasetError(
            f"{json_path}: categories {sorted(keep - set(names.values()))} not found; "
            f"available: {', '.join(sorted(set(names.values())))}"
        )
    images = _list_images(data, json_path, images_dir)
    for ann in data["annotations"]:
        ann_id, im = ann.get("id"), images.get(ann.get("image_id"))
        if im is None:
            raise DatasetError(
                f"{json_path}: annotation {ann_id} refers to image id {ann.get('image_id')!r}, "
                f"which is not in 'images'"
            )
        category = names.get(ann.get("category_id"))
        if category is None:
            raise DatasetError(
                f"{json_path}: annotation {ann_id} has category_id {ann.get('category_id')!r}, "
                f"which is not in 'categories'"
            )
        if ann.get("iscrowd"):
            im.skips.append(("crowd", f"annotation {ann_id}: crowd region"))
            continue
        if keep is not None and category not in keep:
            im.skips.append(("category", f"annotation {ann_id}: category '{category}' not kept"))
            continue
        rle = _segmentation_rle(ann, im.size, json_path)
        if rle is None:
            logger.warning(
                "%s: annotation %s on %s has a polygon with fewer than 3 points; skipping it",
                json_path, ann_id, im.path.name,
            )  # fmt: skip
            im.skips.append(("bad_polygon", f"annotation {ann_id}: polygon with < 3 points"))
            continue
        area = float(mask_utils.area(rle))
        if area <= 0 or area < min_area:
            reason = f"annotation {ann_id}: area {area:g} px < min_area {min_area:g}"
            im.skips.append(("small", reason))
            continue
        im.rles.append(rle)
        im.categories.append(category)
    for im in images.values():
        if not im.rles:
            im.skips.append(("no_instances", "no instance left to train or evaluate on"))
    return list(images.values())


class CocoDataset(Dataset[Sample]):
    """Some images of a COCO file; K = all kept instances of an image, `categories` names them."""

    def __init__(self, images: list[CocoImage], img_size: int, label: str = "coco") -> None:
        if img_size <= 0:
            raise DatasetError(f"img_size must be positive, got {img_size}")
        self.img_size = img_size
        self.transform = None  # training augmentation, set by the runner on the train split only
        self._images = [im for im in images if im.rles]
        self._skips = [(kind, im.name, reason) for im in images for kind, reason in im.skips]
        self.skipped = [(name, reason) for _, name, reason in self._skips]
        counts = {k: v for k, v in self.summary().items() if k.startswith("skipped_") and v}
        skipped = ", ".join(f"{v} {k[8:].replace('_', ' ')}" for k, v in counts.items()) or "none"
        n = sum(len(im.rles) for im in self._images)
        logger.info("%s: %d images, %d instances; skipped: %s", label, len(self), n, skipped)
        if not self._images:
            raise DatasetError(f"{label}: no image has an instance left to train or evaluate on")

    @property
    def names(self) -> list[str]:
        return [im.name for im in self._images]

    def summary(self) -> dict[str, int]:
        """Counts for the run log: images loaded, and every kind of skip (instances or images)."""
        counts = Counter(kind for kind, _, _ in self._skips)
        return {"loaded": len(self._images), **{f"skipped_{k}": counts[k] for k in _SKIPS}}

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> Sample:
        im = self._images[index]
        image = apply_orientation(read_image_rgb(im.path), im.orientation)
        masks = mask_utils.decode(im.rles).transpose(2, 0, 1).astype(bool)  # H×W×K -> K×H×W
        return make_sample(
            im.name, str(im.path), image, masks, self.img_size,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


def _hold_out(
    images: list[CocoImage], val_size: float, seed: int, source: Path
) -> tuple[list[CocoImage], list[CocoImage]]:
    """Seeded (train, held-out) parts with max(1, round(val_size × usable)) usable images held out.

    Images without instances go wherever the shuffle puts them, so each part reports its own skips.
    """
    if not 0 < val_size < 1:
        raise DatasetError(f"dataset.val_size must be between 0 and 1, got {val_size}")
    usable = sum(1 for im in images if im.rles)
    k = max(1, round(usable * val_size))
    if usable - k < 1:
        raise DatasetError(
            f"{source}: {usable} image(s) with instances, too few to hold out val_size={val_size} "
            f"and still train; add images or use the pre-split layout"
        )
    held: set[int] = set()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
    for i in order:
        if k == 0:
            break
        held.add(i)
        k -= bool(images[i].rles)
    return [im for i, im in enumerate(images) if i not in held], [images[i] for i in sorted(held)]


def coco_splits(
    name: str,
    root: str,
    img_size: int,
    images_dir: str = "images",
    annotations: str = "annotations.json",
    train_split: str = "train",
    val_split: str = "val",
    val_size: float = 0.2,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    min_area: float = 0.0,
) -> DatasetSplits:
    """The splits of a COCO dataset (the `conf/dataset/coco.yaml` target); layout from the files.

    Pre-split when `<root>/<train_split>/<annotations>` exists (its `<val_split>` part is the test
    split); otherwise `<root>/<annotations>` whose images are split here, seeded. `val` stays None:
    the runner carves its validation split from train.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(
            f"dataset root {base.resolve()} does not exist; set SAMEXP_DATA to the folder holding "
            f"your datasets, or data_root=/path, or dataset.root=/path/to/this/dataset"
        )
    cats = list(categories) if categories is not None else None

    def read(folder: Path) -> list[CocoImage]:
        return read_coco(folder / annotations, folder / images_dir, cats, min_area)

    if (base / train_split / annotations).is_file():
        train, held = read(base / train_split), read(base / val_split)
    elif (base / annotations).is_file():
        train, held = _hold_out(read(base), val_size, seed, base / annotations)
    else:
        raise DatasetError(
            f"no COCO annotations in {base}: expected {base / annotations} (one file, split by "
            f"val_size) or {base / train_split / annotations} and {base / val_split / annotations}"
        )
    return DatasetSplits(
        name=name,
        train=CocoDataset(train, img_size, f"{name} train"),
        test=CocoDataset(held, img_size, f"{name} test"),
    )
