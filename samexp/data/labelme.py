"""The LabelMe format: one JSON beside each image, one sample per image carrying all its instances.

Every JSON is read, checked and rasterised when a split is built (a bad file stops the run before
any model is built, naming it); masks are kept as compressed RLE and decoded when a sample is read.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError
from samexp.config.limits import check_instances, load_json
from samexp.config.options import option
from samexp.config.paths import dataset_name
from samexp.data.base import IMAGE_EXTENSIONS, Sample, make_sample
from samexp.data.bounds import Reach, note_outside
from samexp.data.coco import CocoDataset
from samexp.data.coco_json import CocoImage
from samexp.data.files import open_image, shown
from samexp.data.frame import Pipeline
from samexp.data.orientation import (
    annotation_frame,
    apply_orientation,
    image_header,
    orientation_of,  # the EXIF tag of an open image: the embedded one has no path
)
from samexp.data.split_folders import evaluated_splits, split_candidates, subfolders
from samexp.data.splits import (
    DatasetSplits,
    TestFraction,
    TrainLimit,
    require_dataset_root,
)

logger = logging.getLogger(__name__)

# summary() counters, in the order the run log shows them
_SKIPS = ("category", "ignored_shape", "bad_polygon", "no_area", "small", "no_instances", "no_json",
          "missing_image")  # fmt: skip
# a label that is no class: labelme's labels.txt lists it first (id -1), and its labelme2coco and
# labelme2voc converters leave its shapes out of the instances (regions nobody labelled)
IGNORE_LABEL = "__ignore__"
_NO_AREA = frozenset({"line", "linestrip", "point", "points"})  # drawn, but they enclose nothing
_EMBEDDED_FORMATS = frozenset({"PNG", "JPEG", "BMP", "TIFF", "WEBP"})


@dataclass
class LabelmeImage(CocoImage):
    """A COCO-like image record; `data` holds the JSON's embedded image when no file is beside it."""

    data: bytes | None = None


class LabelmeDataset(CocoDataset):
    """The images of one split folder; K = all kept instances of an image, `categories` names them."""

    SKIPS = _SKIPS

    def __getitem__(self, index: int) -> Sample:
        im = self._images[index]
        if not isinstance(im, LabelmeImage) or im.data is None:
            return super().__getitem__(index)
        with Image.open(io.BytesIO(im.data)) as embedded:  # checked when the split was built
            image = apply_orientation(np.asarray(embedded.convert("RGB")), im.orientation)
        masks = mask_utils.decode(im.rles).transpose(2, 0, 1).astype(bool)
        return make_sample(
            im.name, str(im.path), image, masks, self.pipeline,
            categories=list(im.categories), transform=self.transform,
        )  # fmt: skip


def _load(path: Path) -> dict:
    """The JSON as LabelMe writes it, or a DatasetError naming the file."""
    data = load_json(path)
    keys = {"imagePath": str, "shapes": list, "imageHeight": int, "imageWidth": int}
    wrong = [
        k for k, t in keys.items() if not isinstance(data, dict) or not isinstance(data.get(k), t)
    ]
    if wrong:
        raise DatasetError(
            f"{shown(path)}: not a LabelMe file (no {', '.join(repr(k) for k in wrong)}); a LabelMe "
            f"JSON is an object with 'imagePath', 'imageHeight', 'imageWidth' and a 'shapes' list"
        )
    return data


def _image_path(data: dict, json_path: Path, root: Path) -> Path:
    """`imagePath` (relative to the JSON; Windows LabelMe writes backslashes), never outside root."""
    rel = PurePosixPath(data["imagePath"].replace("\\", "/"))
    path = Path(os.path.normpath(json_path.parent / rel))
    inside = os.path.normpath(root.absolute())
    if rel.is_absolute() or not rel.parts or not str(path.absolute()).startswith(inside + os.sep):
        raise DatasetError(
            f"{shown(json_path)}: imagePath '{data['imagePath']}' is outside the dataset root "
            f"{shown(root)}; write it relative to the JSON, e.g. '{rel.name}'"
        )
    return path


def _embedded(data: dict, json_path: Path) -> bytes | None:
    """The JSON's `imageData` as image bytes, after checking (header only) it is a sane image."""
    text = data.get("imageData")
    if not isinstance(text, str) or not text:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
        with open_image(io.BytesIO(raw), json_path) as image:  # the pixel limit: not decoded yet
            fmt, (w, h) = image.format, image.size
            if fmt not in _EMBEDDED_FORMATS:
                raise DatasetError(
                    f"{shown(json_path)}: imageData is a {w}×{h} {fmt} image; only PNG, JPEG, "
                    f"BMP, TIFF or WebP are read; put the image file beside it"
                )
            image.load()  # decoded once now (size checked first): a truncated one stops here
    except (binascii.Error, ValueError, OSError) as e:
        raise DatasetError(f"{shown(json_path)}: imageData is not a readable image ({e})") from e
    return raw


def _mask_shape(shape: dict, size: tuple[int, int], where: str) -> np.ndarray:
    """A `mask` shape: a PNG of its bounding box, pasted where its two points say."""
    h, w = size
    try:
        (x1, y1), (x2, y2) = ((int(x), int(y)) for x, y in shape["points"])
        if min(x1, y1) < 0 or x2 >= w or y2 >= h:  # checked before the PNG is decoded
            raise ValueError(f"its box ({x1},{y1})-({x2},{y2}) leaves the {w}×{h} image")
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"], validate=True))) as png:
            if png.size != (x2 - x1 + 1, y2 - y1 + 1) or png.format != "PNG":
                raise ValueError(f"a {png.size[0]}×{png.size[1]} {png.format} for that box")
            patch = np.asarray(png.convert("L")) > 0
    except (KeyError, TypeError, ValueError, binascii.Error, OSError) as e:
        raise DatasetError(
            f"{where}: not a LabelMe mask (a PNG of the box its two points span: {e})"
        ) from e
    mask = np.zeros(size, dtype=bool)
    mask[y1 : y2 + 1, x1 : x2 + 1] = patch
    return mask


def _rasterise(shape: dict, kind: str, size: tuple[int, int], where: str,
               outside: list[Reach]) -> np.ndarray | None:  # fmt: skip
    """H×W bool for an area shape, drawn as LabelMe's own `shape_to_mask` draws it (PIL, outline
    included), so the target is what the user saw; None for a polygon under 3 points. A shape
    reaching past the image is clipped by the canvas and noted in `outside` (`data.bounds`)."""
    if kind == "mask":
        return _mask_shape(shape, size, where)
    points = shape.get("points")
    try:
        xy = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where}: 'points' must be a list of [x, y] pairs ({e})") from e
    drawn = (kind == "polygon" and len(xy) >= 3) or (kind == "rectangle" and len(xy) >= 2)
    if kind == "circle" and len(xy) == 2:  # the centre and a point on the circle: a filled disc
        (cx, cy), (px, py) = xy
        r = float(np.hypot(px - cx, py - cy))
        xy, drawn = [(cx - r, cy - r), (cx + r, cy + r)], True  # the disc's box
    if not drawn:
        return None
    note_outside(where, np.array(xy), size, outside, f"a {kind}'s point")  # before drawing
    canvas = Image.new("1", (size[1], size[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        draw.polygon(xy, outline=1, fill=1)
    elif kind == "rectangle":  # two corners, in either order: a filled box
        xs, ys = [x for x, _ in xy], [y for _, y in xy]
        draw.rectangle([min(xs), min(ys), max(xs), max(ys)], outline=1, fill=1)
    else:
        draw.ellipse(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _instances(data: dict, im: LabelmeImage, json_path: Path, min_area: float) -> None:
    """Fill `im.rles`/`im.categories` from the shapes; shapes sharing a label and a group_id are
    one instance (LabelMe's way of drawing an object split by occlusion)."""
    # every area shape becomes a full-size mask here, before shapes of one group are merged
    check_instances(len(data["shapes"]), im.size, shown(json_path), "shapes")
    merged: dict[tuple, np.ndarray] = {}
    for i, shape in enumerate(data["shapes"]):
        where = f"{shown(json_path)}: shape {i}"
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise DatasetError(f"{where} has no 'label'; a LabelMe shape names its label")
        label, kind = shape["label"], shape.get("shape_type") or "polygon"  # old files: polygons
        if label == IGNORE_LABEL:
            im.skips.append(("ignored_shape", f"shape {i}: {IGNORE_LABEL}, a region, no instance"))
            continue
        if kind in _NO_AREA:
            im.skips.append(("no_area", f"shape {i} ('{label}'): a {kind} has no area"))
            continue
        if kind not in ("polygon", "rectangle", "circle", "mask"):
            raise DatasetError(f"{where} has shape_type '{kind}', which LabelMe does not write")
        mask = _rasterise(shape, kind, im.size, where, im.outside)
        if mask is None:
            im.skips.append(("bad_polygon", f"shape {i} ('{label}'): {kind} with too few points"))
            continue
        group = shape.get("group_id")
        key = (label, i) if group is None else (label, "group", group)
        merged[key] = merged[key] | mask if key in merged else mask
    for (label, *_), mask in merged.items():
        area = int(mask.sum())
        if area <= 0 or area < min_area:
            im.skips.append(("small", f"'{label}': area {area} px < min_area {min_area:g}"))
            continue
        im.rles.append(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
        im.categories.append(label)


def read_labelme(folder: str | Path, root: str | Path, min_area: float = 0.0,
                 missing_images: Literal["error", "skip"] = "error") -> list[LabelmeImage]:  # fmt: skip
    """Every LabelMe JSON in `folder` with its image and kept instances, and every image without
    a JSON (skipped, counted: it has no instances). An image whose file is missing is read from
    the JSON's `imageData` (as LabelMe does); without either it stops the run (or is skipped)."""
    folder, root = Path(folder), Path(root)
    images: list[LabelmeImage] = []
    for json_path in sorted(folder.glob("*.json")):
        data = _load(json_path)
        path = _image_path(data, json_path, root)
        stated = (data["imageHeight"], data["imageWidth"])
        im = LabelmeImage(json_path.stem, path, size=stated)
        images.append(im)
        if path.is_file():
            stored, orientation = image_header(path)
        else:
            im.data = _embedded(data, json_path)
            if im.data is None:
                if missing_images == "error":
                    raise DatasetError(
                        f"{shown(json_path)}: its image {shown(path)} does not exist and the JSON "
                        f"embeds none (imageData); add it, fix imagePath, or skip such JSONs with "
                        f"dataset.missing_images=skip"
                    )
                im.missing = True
                im.skips.append(("missing_image", f"{shown(path)} does not exist"))
                continue
            im.path = json_path
            with Image.open(io.BytesIO(im.data)) as embedded:
                stored, orientation = embedded.size[::-1], orientation_of(embedded)
        im.size, im.orientation = annotation_frame(
            stored,
            orientation,
            stated,
            f"{shown(im.path)}: {shown(json_path)}",
            "fix its 'imageWidth'/'imageHeight' or re-save it in LabelMe",
        )
        _instances(data, im, json_path, min_area)
    described = {os.path.normpath(im.path) for im in images}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        if os.path.normpath(path) not in described:
            images.append(LabelmeImage(path.stem, path, (0, 0), skips=[("no_json", "no JSON")]))
    return images


def _keep(splits: dict[str, list[LabelmeImage]], categories: Sequence[str] | None) -> None:
    """Drop (and count) instances of other labels than `categories`, which must all be labels of
    some split (a kept label may be absent from one split); then count images left empty."""
    images = [im for part in splits.values() for im in part]
    if categories is not None:
        found = {c for im in images for c in im.categories}
        unknown = sorted(set(categories) - found)
        if unknown:
            raise DatasetError(
                f"dataset.categories: {unknown} label no shape; labels found: "
                f"{', '.join(sorted(found)) or 'none'}"
            )
        for im in images:
            kept = [i for i, c in enumerate(im.categories) if c in categories]
            im.skips += [("category", f"label '{c}' not kept") for c in im.categories
                         if c not in categories]  # fmt: skip
            im.rles, im.categories = [im.rles[i] for i in kept], [im.categories[i] for i in kept]
    for im in images:
        counted = any(kind in ("no_json", "missing_image") for kind, _ in im.skips)  # as images
        if not im.rles and not counted:
            im.skips.append(("no_instances", "no instance left to train or evaluate on"))


def _split_folder(base: Path, split: str | None) -> Path | None:
    """The folder of `split`, by any of its names (`split_folders`); `.` is the root itself."""
    for name in split_candidates(split) if split is not None else ():
        if (base / name).is_dir():
            return base / name
    return None


@option("dataset", "labelme", provided=("pipeline",))
def labelme_splits(
    root: str,
    pipeline: Pipeline,
    name: str | None = None,  # in run names; default: the root folder's name
    train_split: str = "train",  # `.`: the root itself (JSONs beside images, no split folders)
    val_split: str | None = "val",  # also valid/validation/dev; absent: carved from train
    # also testing; absent: the val folder is the test split, else held out (null: held out)
    test_split: str | None = "test",
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    categories: Sequence[str] | None = None,  # keep only shapes with these labels (default: all)
    min_area: float = 0.0,  # instances smaller than this many pixels are skipped (and counted)
    # a JSON whose image is neither beside it nor embedded: stop (error), or skip and count (skip)
    missing_images: Literal["error", "skip"] = "error",
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of a LabelMe dataset (`conf/dataset/labelme.yaml`): `<root>/<split>/*.json`,
    or `<root>/*.json` (split `.`). Without a test folder, the val folder is the test split (as
    for COCO and YOLO: `split_folders.evaluated_splits`), else one is held out of train."""
    base, name = require_dataset_root(root), dataset_name(name, root)
    found = {"train": _split_folder(base, train_split), "val": _split_folder(base, val_split),
             "test": _split_folder(base, test_split)}  # fmt: skip
    if found["train"] is None:
        looked = ", ".join(f"{n}/" for n in split_candidates(train_split))
        flat = len(list(base.glob("*.json")))
        raise DatasetError(
            f"{shown(base)}: no LabelMe train folder ({looked}); folders there: "
            f"{', '.join(subfolders(base)) or 'none'}, and {flat} JSON file(s) in the root itself; "
            f"set dataset.train_split=<folder>, or dataset.train_split=. when the JSONs are in "
            f"the root"
        )
    found["val"], found["test"] = evaluated_splits(name, found["val"], found["test"], test_split,
                                                   test_fraction)  # fmt: skip
    folders = {s: f for s, f in found.items() if f is not None}
    read = {s: read_labelme(f, base, min_area, missing_images) for s, f in folders.items()}
    _keep(read, categories)
    parts = {s: LabelmeDataset(images, pipeline, f"{name} {s}") for s, images in read.items()}
    return DatasetSplits.assemble(name, base, parts["train"], parts.get("test"), parts.get("val"),
                                  limit, test_fraction)  # fmt: skip
