"""Reading and checking a COCO instance-segmentation JSON file, ready for `CocoDataset`.

The file is checked in full (structure, ids, file names, image files and sizes, segmentations),
so a bad file stops the run before any model is built, naming the file. Masks are kept as
compressed RLE; decoding them is left to whoever reads a sample.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError
from samexp.config.limits import ANNOTATIONS, INSTANCES_PER_IMAGE, check_instances, load_json
from samexp.data.bounds import Reach
from samexp.data.files import link_problem, shown
from samexp.data.held_out import relative_key
from samexp.data.orientation import annotation_frame, image_header
from samexp.data.segmentation import polygons_rle, rle_checked

logger = logging.getLogger(__name__)


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
    missing: bool = False  # listed, but its file is not there (skipped: missing_images=skip)
    outside: list[Reach] = field(default_factory=list)  # polygons clipped to it (data.bounds)


class _AnnotationBudget:
    """A json `object_hook` counting annotations as the parser builds them, so a file of too many
    (in all, or on one image) stops before the rest of it becomes Python objects."""

    def __init__(self, path: Path) -> None:
        self.path, self.total, self.per_image = path, 0, Counter()
        self.max_total, self.max_per_image = ANNOTATIONS.value, INSTANCES_PER_IMAGE.value

    def __call__(self, obj: dict) -> dict:
        if "image_id" not in obj:  # images, categories, RLEs, the file itself
            return obj
        self.total += 1
        if self.total > self.max_total:
            what = f"it has more than {self.max_total:,} annotations"
            ANNOTATIONS.check(self.total, str(self.path), what)
        try:
            count = self.per_image[obj["image_id"]] = self.per_image[obj["image_id"]] + 1
        except TypeError:  # a list or an object: no image has that id
            raise DatasetError(
                f"{self.path}: an annotation has image_id {obj['image_id']!r:.40}, which is not "
                f"an image id"
            ) from None
        if count > self.max_per_image:
            INSTANCES_PER_IMAGE.check(
                count, str(self.path), f"image {obj['image_id']!r:.40} has more than "
                f"{self.max_per_image:,} annotations",
            )  # fmt: skip
        return obj


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"COCO annotations file {path} does not exist; fix the path")
    data = load_json(path, object_hook=_AnnotationBudget(path))
    keys = ("images", "annotations", "categories")
    missing = [k for k in keys if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(
            f"{path}: no {', '.join(repr(k) for k in missing)} list; a COCO file is an object "
            f"with 'images', 'annotations' and 'categories' lists"
        )
    for key in keys:
        strays = [i for i, entry in enumerate(data[key]) if not isinstance(entry, dict)]
        if strays:
            raise DatasetError(
                f"{path}: {key}[{strays[0]}] is {type(data[key][strays[0]]).__name__}, not an "
                f"object ({len(strays):,} such entries); every entry of '{key}' is a JSON object"
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
    return annotation_frame(stored, orientation, stated, f"{path}: {json_path.name}",
                            "fix its 'width'/'height' or re-export the annotations")  # fmt: skip


def _absent(path: Path, images_dir: Path) -> str:
    """A listed file that cannot be opened, as a message names it: a bad symlink says so."""
    name, problem = shown(relative_key(path, images_dir)), link_problem(path)
    return f"{name} ({problem})" if problem else name


def _inside(path: Path, boundary: Path) -> bool:
    """Whether `path`, written without `..`, is under `boundary` as given or as resolved (an
    absolute file_name may spell the root either way); a symlink inside the root is not
    followed out of it here: the dataset's own links are the dataset's."""
    target = Path(os.path.abspath(path))
    return any(target.is_relative_to(b) for b in (Path(os.path.abspath(boundary)),
                                                   boundary.resolve()))  # fmt: skip


def _locate(file_name: str, folders: list[Path], boundary: Path) -> Path | None:
    """The first of `folders` holding `file_name` (tools write it relative to different
    folders: the images folder, the JSON's, the dataset root; labelme2coco also absolute or with
    `../`, and Windows' backslashes), else where the first would; None when the file it names
    is outside `boundary` (every reading of it is, or the only one that exists is)."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    bases = [Path("/")] if rel.is_absolute() else folders
    readings = [Path(os.path.normpath(d / rel)) for d in bases]
    inside = [p for p in readings if _inside(p, boundary)]
    found = next((p for p in inside if p.is_file()), None)
    if found is None and any(p.is_file() for p in readings if p not in inside):
        return None
    return found or (inside[0] if inside else None)


def _list_images(
    data: dict, json_path: Path, folders: list[Path], boundary: Path, missing_images: str
) -> dict[object, CocoImage]:
    """Image id -> CocoImage, after checking every entry and file (see `read_coco`); no image is
    read from outside `boundary`."""
    images: dict[object, CocoImage] = {}
    ids_by_file: dict[str, object] = {}
    stated: dict[object, tuple[int, int]] = {}  # (H, W) as the JSON says, where it says
    for entry in data["images"]:
        image_id, file_name = entry.get("id"), entry.get("file_name")
        if image_id is None or not isinstance(file_name, str):
            raise DatasetError(f"{json_path}: image entry {entry!r:.80} lacks 'id' or 'file_name'")
        path = _locate(file_name, folders, boundary) if file_name.strip() else None
        if path is None:
            raise DatasetError(
                f"{json_path}: image {image_id} has file_name '{file_name}', which is outside "
                f"{shown(boundary)}; samexp reads no image outside the dataset's folder: point "
                f"dataset.root at a folder holding it, or write file_name relative to {folders[0]}"
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
        images[image_id] = CocoImage(path.stem, path, size=(0, 0))
    _missing(images, json_path, folders, missing_images)
    stems = Counter(im.name for im in images.values() if not im.missing)
    for image_id, file_name in ((i, f) for f, i in ids_by_file.items() if not images[i].missing):
        im = images[image_id]
        if stems[im.name] > 1:  # e.g. a/0001.jpg and b/0001.jpg
            plain = not PurePosixPath(file_name).is_absolute() and ".." not in file_name
            im.name = (file_name if plain else relative_key(im.path, boundary)).replace("/", "__")
        im.size, im.orientation = _orientation_for(im.path, stated.get(image_id), json_path)
    return images


def _missing(
    images: dict[object, CocoImage], json_path: Path, folders: list[Path], missing_images: str
) -> None:
    """Refuse listed images without a file, or (missing_images=skip) mark them skipped, said once."""
    gone = [im for im in images.values() if not im.path.is_file()]
    if not gone:
        return
    names = [_absent(im.path, folders[0]) for im in gone]
    listed = f"{', '.join(names[:5])}{' ...' * (len(names) > 5)}"
    elsewhere = "".join(f" (nor under {d})" for d in folders[1:])
    if missing_images == "error":
        raise DatasetError(
            f"{len(gone)} image(s) listed in {json_path} are missing from {folders[0]}: "
            f"{listed}{elsewhere}; add them or fix file_name, or skip them with "
            f"dataset.missing_images=skip"
        )
    logger.warning(
        "%s: %d of its %d images are missing from %s: %s%s; skipping them "
        "(dataset.missing_images=skip)",
        json_path, len(gone), len(images), folders[0], listed, elsewhere,
    )  # fmt: skip
    for im in gone:
        im.missing = True
        im.skips.append(("missing_image", f"{im.path} does not exist"))


def _segmentation_rle(
    ann: dict, size: tuple[int, int], json_path: Path, outside: list[Reach]
) -> dict | None:
    """One compressed RLE for polygons (merged) or RLE; None for a polygon with < 3 points."""
    seg, (h, w) = ann.get("segmentation"), size
    where = f"{json_path}: annotation {ann.get('id')!r:.40}"
    if isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            return None  # pycocotools would read a 4-number "polygon" as a box
        return polygons_rle(seg, size, where, outside=outside)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        if not isinstance(seg["size"], list) or seg["size"] != [h, w]:
            raise DatasetError(
                f"{json_path}: annotation {ann.get('id')} has an RLE of size {seg['size']!r:.40} "
                f"(H, W) but its image is {h}×{w}; the RLE must cover the whole image"
            )
        return rle_checked(seg, size, where)
    raise DatasetError(
        f"{json_path}: annotation {ann.get('id')} has no usable 'segmentation' "
        f"(polygons or RLE); samexp needs instance masks, not only boxes"
    )


def _class_of(categories: list, json_path: Path) -> dict[object, str]:
    """Category id -> its `supercategory`; a category without one (missing or empty) is a class
    of its own under its name, said once per file rather than refused: a mixed file still works."""
    classes, alone = {}, []
    for c in categories:
        group = c.get("supercategory")
        if isinstance(group, str) and group.strip():
            classes[c.get("id")] = group.strip()
        else:
            classes[c.get("id")] = str(c.get("name"))
            alone.append(str(c.get("name")))
    if alone:
        shown_names = ", ".join(alone[:10]) + (" ..." * (len(alone) > 10))
        logger.warning(
            "%s: %d categor%s no 'supercategory' (%s); with dataset.group_by=supercategory each "
            "is a class of its own, under its name",
            json_path, len(alone), "y has" if len(alone) == 1 else "ies have", shown_names,
        )  # fmt: skip
    logger.info(
        "%s: %d categories grouped into %d classes (dataset.group_by=supercategory)",
        json_path, len(categories), len(set(classes.values())),
    )  # fmt: skip
    return classes


def _require_masks(annotations: list, json_path: Path) -> None:
    """A file of boxes alone (CVAT's box export: every `segmentation` empty) is refused once,
    rather than as one skipped "polygon" per annotation and then no image left."""
    if annotations and not any(ann.get("segmentation") for ann in annotations):
        boxes = sum(1 for ann in annotations if ann.get("bbox"))
        raise DatasetError(
            f"{json_path}: its {len(annotations)} annotations have {boxes} boxes but no masks "
            f"(every 'segmentation' is empty); samexp trains on instance masks: export polygons "
            f"or masks from your tool, or make masks from the boxes (e.g. with SAM) first"
        )


def _used_categories(data: dict, json_path: Path) -> list:
    """The categories some annotation uses: Roboflow lists a placeholder (id 0, named after the
    project, no annotations) that is not a class, so it is not offered as one."""
    used = {ann.get("category_id") for ann in data["annotations"]}
    unused = [str(c.get("name")) for c in data["categories"] if c.get("id") not in used]
    if unused:
        logger.info(
            "%s: ignoring %d categor%s without annotations: %s",
            json_path, len(unused), "y" if len(unused) == 1 else "ies", ", ".join(unused[:10]),
        )  # fmt: skip
    return [c for c in data["categories"] if c.get("id") in used]


def read_coco(
    annotations: str | Path,
    images_dir: str | Path,
    categories: Sequence[str] | None = None,
    min_area: float = 0.0,
    group_by: Literal["category", "supercategory"] = "category",
    root: str | Path | None = None,
    missing_images: Literal["error", "skip"] = "error",
) -> list[CocoImage]:
    """Every image listed in a COCO file, with the instances that can be training targets.

    A `file_name` is looked up under `images_dir`, else beside the JSON, else under `root`
    (the dataset root); absolute or with `..` it is used where it points, and never outside
    `root` (an image there is refused, naming it). Crowd annotations (`iscrowd=1`) are not
    targets: COCO evaluation treats them as regions to ignore, not objects to find. They,
    instances of other categories than `categories`, polygons with fewer than 3 points and
    instances under `min_area` pixels are skipped and recorded; so are images without their
    file when `missing_images="skip"`. `group_by="supercategory"` names each instance by its
    category's super-category (see `_class_of`); `categories` may then name categories or
    super-categories. Categories no annotation uses are not classes (`_used_categories`).
    """
    json_path, images_dir = Path(annotations), Path(images_dir)
    folders = list(dict.fromkeys([images_dir, json_path.parent, *([Path(root)] if root else [])]))
    boundary = (
        Path(root) if root else Path(os.path.commonpath([os.path.abspath(d) for d in folders]))
    )
    data = _load_json(json_path)
    _require_masks(data["annotations"], json_path)
    names, classes, keep = _categories(data, json_path, categories, group_by)
    images = _list_images(data, json_path, folders, boundary, missing_images)
    bad_polygons: list[str] = []
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
        if im.missing:  # counted once, as its image
            continue
        if ann.get("iscrowd"):
            im.skips.append(("crowd", f"annotation {ann_id}: crowd region"))
            continue
        group = classes[ann.get("category_id")]  # the class it counts as (its category by default)
        if keep is not None and category not in keep and group not in keep:
            im.skips.append(("category", f"annotation {ann_id}: category '{category}' not kept"))
            continue
        rle = _segmentation_rle(ann, im.size, json_path, im.outside)
        if rle is None:
            bad_polygons.append(f"annotation {ann_id} on {im.path.name}")
            im.skips.append(("bad_polygon", f"annotation {ann_id}: polygon with < 3 points"))
            continue
        area = float(mask_utils.area(rle))
        if area <= 0 or area < min_area:
            reason = f"annotation {ann_id}: area {area:g} px < min_area {min_area:g}"
            im.skips.append(("small", reason))
            continue
        im.rles.append(rle)
        im.categories.append(group)
    return _finished(list(images.values()), bad_polygons, json_path)


def _categories(
    data: dict, json_path: Path, categories: Sequence[str] | None, group_by: str
) -> tuple[dict, dict, set[str] | None]:
    """(category id -> name, category id -> the class it counts as, the names kept or None);
    a kept name that no category (or, by group_by, super-category) has is refused."""
    names = {c.get("id"): str(c.get("name")) for c in data["categories"]}
    used = _used_categories(data, json_path)
    classes = _class_of(used, json_path) if group_by == "supercategory" else names
    keep = set(categories) if categories is not None else None
    known = set(names.values()) | set(classes.values())  # a category unused here may be elsewhere
    if keep is not None and keep - known:
        shown_known = {names[c.get("id")] for c in used} | {classes[c.get("id")] for c in used}
        raise DatasetError(
            f"{json_path}: categories {sorted(keep - known)} not found; "
            f"available: {', '.join(sorted(shown_known))}"
        )
    return names, classes, keep


def _finished(images: list[CocoImage], bad_polygons: list[str], json_path: Path) -> list[CocoImage]:
    """The file's images after its annotations: the short polygons said in one line, each image's
    instance count bounded, an image left with none marked so."""
    if bad_polygons:  # one line per file: a tool's habit repeats on every annotation
        logger.warning(
            "%s: %d annotation(s) have a polygon with fewer than 3 points (%s%s); skipping them",
            json_path, len(bad_polygons), ", ".join(bad_polygons[:5]),
            " ..." * (len(bad_polygons) > 5),
        )  # fmt: skip
    for im in images:
        check_instances(len(im.rles), im.size, f"{json_path}: {im.path.name}", "annotations")
        if not im.rles and not im.missing:
            im.skips.append(("no_instances", "no instance left to train or evaluate on"))
    return images
