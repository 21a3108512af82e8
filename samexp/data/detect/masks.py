"""Mask files beside images: binary masks (`dataset=folder`) or label maps (`dataset=labelmap`).

Where they are is read from folder names (`<split>/images` + `<split>/masks`, `images/<split>` +
`masks/<split>`, CamVid's `train/` + `trainannot/`, DRIVE's `training/1st_manual`, one folder
with `x_mask.png` beside `x.jpg`, or no split at all) and pairs by stem; what they are from the
class list beside them (the loader's own `classes.DEFAULT_FILES`: classes.txt, CVAT's
labelmap.txt ...), else from the values of a few of them (`values.read_values`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from samexp.config.limits import TEXT_BYTES, read_bytes
from samexp.data.classes import DEFAULT_FILES
from samexp.data.detect.pairs import Match, match, side_by_side
from samexp.data.detect.reading import Reading, ordered, split_arguments
from samexp.data.detect.tree import Tree, join
from samexp.data.detect.values import read_values
from samexp.data.split_folders import split_of

# folder names, lowercase: images, masks (tier 2), weak mask names (tier 1: DRIVE's `mask/` is
# the field of view, not the vessels), and folders of pictures that are never targets
IMAGE_DIRS = frozenset({"images", "image", "imgs", "img", "jpegimages", "input", "inputs", "rgb",
                        "raw", "x", "photos", "frames", "originals", "original"})  # fmt: skip
MASK_DIRS = frozenset({"masks", "labels", "label", "annotations", "annotation", "gt", "groundtruth",
                       "ground_truth", "1st_manual", "manual", "segmentationclass",
                       "segmentationclasspng", "segmentation", "segmentations", "seg", "targets",
                       "target", "y", "annot", "annots", "labelmaps", "label_maps", "semantic",
                       "ground-truth", "gts", "binary_masks"})  # fmt: skip
WEAK_MASK_DIRS = frozenset({"mask", "2nd_manual"})
NEVER = ("visual", "overlay", "preview", "segmentationobject", "instance", "thumb")
VOC_LISTS = "ImageSets/Segmentation"
_MASK_WORDS = ("annot", "mask", "label", "gt", "seg", "manual", "truth")  # CamVid's `trainannot`


def mask_tier(name: str) -> int:
    """How surely a folder name means "the masks": 2, 1 (DRIVE's field-of-view `mask/`), 0."""
    lowered = name.lower()
    if any(word in lowered for word in NEVER):
        return -1
    if lowered in MASK_DIRS:
        return 2
    return 1 if lowered in WEAK_MASK_DIRS else 0


@dataclass(frozen=True)
class Placement:
    """Where one layout puts a split's images and masks; `{split}` is the split folder's name."""

    images_dir: str
    masks_dir: str
    splits: dict[str, str]  # canonical split -> folder name ("." : no split folder)
    tier: int
    split_files: str | None = None  # VOC's `ImageSets/Segmentation/{split}.txt`: stems per split
    listed: dict[str, frozenset[str]] | None = None  # split -> its stems, when split_files

    def folders(self, split: str) -> tuple[str, str]:
        """(images folder, masks folder) relative to the root, as the factories resolve them."""
        if self.split_files:
            return self.images_dir, self.masks_dir
        return tuple(
            d.replace("{split}", split) if "{split}" in d else join(split, d)
            for d in (self.images_dir, self.masks_dir)
        )  # type: ignore[return-value]


def _split_dirs(names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        split = split_of(name)
        if split is not None:
            found.setdefault(split, name)
    return ordered(found) if "train" in found else {}


def _holds_images(tree: Tree, rel: str) -> bool:
    """Image files in `rel`, or in its split folders (`images/train/`)."""
    folder = tree.get(rel)
    if folder is None:
        return False
    if folder.images:
        return True
    nested = _split_dirs(folder.dirs).values()
    return any((f := tree.get(join(rel, d))) is not None and f.images for d in nested)


def _named_splits(names: list[str]) -> dict[str, dict[str, str]]:
    """Folders whose name holds a split as one word (ISIC's `ISIC2018_Task1_Training_GroundTruth`),
    by the name with that word as `{split}`: template -> canonical split -> the word."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        words = re.split(r"([_\-\s])", name)
        for i, word in enumerate(words):
            split = split_of(word)
            if split is not None:
                template = "".join(words[:i] + ["{split}"] + words[i + 1 :])
                out.setdefault(template, {}).setdefault(split, word)
    return {t: ordered(s) for t, s in out.items() if "train" in s and t != "{split}"}


def _sibling_pairs(tree: Tree, rel: str) -> list[tuple[str, str, int]]:
    """(images folder, masks folder, tier) among the sub-folders of `rel`; (".", ".") when images
    and masks sit side by side in it."""
    folder = tree.get(rel)
    if folder is None:
        return []
    out = [(".", ".", 2)] if side_by_side(folder.images) else []
    with_images = [d for d in folder.dirs if _holds_images(tree, join(rel, d))]
    for masks in with_images:
        tier = mask_tier(masks)
        if tier <= 0:
            continue
        for images in with_images:
            if images != masks and mask_tier(images) == 0:
                out.append((images, masks, tier))
    return out


def placements(tree: Tree) -> list[Placement]:
    """Every arrangement of images and masks the folder names allow (pairing decides later)."""
    root = tree.get(".")
    splits = _split_dirs(root.dirs)
    out: list[Placement] = []
    if splits:
        train = splits["train"]
        for images, masks, tier in _sibling_pairs(tree, train):  # <split>/images + <split>/masks
            out.append(Placement(images, masks, splits, tier))
        for other in root.dirs:  # CamVid's train/ + trainannot/, Carvana's train/ + train_masks/
            tail = other[len(train) :]
            if other.startswith(train) and tail and any(w in tail.lower() for w in _MASK_WORDS):
                out.append(Placement("{split}", "{split}" + tail, splits, 2))
    named = _named_splits(root.dirs)
    for masks, mask_splits in named.items():  # ISIC's <prefix>_<Split>_Input + ..._GroundTruth
        if not any(w in masks.lower() for w in _MASK_WORDS):
            continue
        for images, image_splits in named.items():
            common = {s: w for s, w in image_splits.items() if mask_splits.get(s) == w}
            if images != masks and "train" in common:
                if not any(w in images.lower() for w in _MASK_WORDS):
                    out.append(Placement(images, masks, common, 2))
    out.extend(_voc(tree))
    for images, masks, tier in _sibling_pairs(tree, "."):
        nested = _split_dirs(tree.get(images).dirs) if images != "." else {}
        if nested and _split_dirs(tree.get(masks).dirs):  # images/<split> + masks/<split>
            out.append(Placement(f"{images}/{{split}}", f"{masks}/{{split}}", nested, tier))
        else:
            out.append(Placement(images, masks, {"train": "."}, tier))
    return out


def _voc(tree: Tree) -> list[Placement]:
    """VOC and CVAT's "Segmentation mask": `ImageSets/Segmentation/<split>.txt` list the stems
    of each split, whose images and label maps are in two folders under the root."""
    lists = tree.get(VOC_LISTS)
    if lists is None or not lists.with_suffix(".txt"):
        return []
    listed = {}
    for name in lists.with_suffix(".txt"):
        path = tree.inside(VOC_LISTS, name)
        if path is not None:
            text = read_bytes(path, TEXT_BYTES).decode("utf-8", "replace")
            listed[name[: -len(".txt")]] = frozenset(line.split()[0] for line in text.splitlines()
                                                     if line.strip())  # fmt: skip
    splits = _split_dirs(list(listed)) or ({"train": min(listed)} if listed else {})
    return [
        Placement(images, masks, splits, tier, f"{VOC_LISTS}/{{split}}.txt", listed)
        for images, masks, tier in _sibling_pairs(tree, ".")
        if images != "."
    ]


def _listed(names: list[str], stems: frozenset[str] | None) -> list[str]:
    return names if stems is None else [n for n in names if n.rsplit(".", 1)[0] in stems]


def _pairs(tree: Tree, place: Placement) -> dict[str, Match] | None:
    """The match of every split of `place`, or None when one split does not pair."""
    out = {}
    for split, name in place.splits.items():
        images_rel, masks_rel = place.folders(name)
        images, masks = tree.get(images_rel), tree.get(masks_rel)
        if images is None or masks is None:
            return None
        stems = place.listed.get(name) if place.listed is not None else None
        image_names, mask_names = _listed(images.images, stems), _listed(masks.images, stems)
        if images_rel == masks_rel:
            found = side_by_side(image_names)
        else:
            found = match(image_names, mask_names)
        if found is None:
            return None
        out[split] = found
    return out


def _suffix_argument(matches: dict[str, Match], splits: dict[str, str], side: str) -> str | None:
    """One suffix for every split; `_{split}` when it is each split's own name (DRIVE)."""
    found = {getattr(m, f"{side}_suffix") for m in matches.values()}
    if len(found) == 1:
        return found.pop()
    if all(getattr(m, f"{side}_suffix") == f"_{splits[s]}" for s, m in matches.items()):
        return "_{split}"
    return None


def readings(tree: Tree) -> list[Reading]:
    """A reading per placement whose every split pairs, best-named mask folders only."""
    found: list[tuple[Placement, dict[str, Match]]] = []
    for place in placements(tree):
        matches = _pairs(tree, place)
        if matches is not None:
            found.append((place, matches))
    listed = {(p.images_dir, p.masks_dir) for p, _ in found if p.split_files}
    found = [(p, m) for p, m in found if p.split_files or (p.images_dir, p.masks_dir) not in listed]
    if not found:
        return []
    top = max(place.tier for place, _ in found)
    out = []
    for place, matches in found:
        if place.tier < top:
            continue
        reading = _reading(tree, place, matches)
        if reading is not None:
            out.append(reading)
    return out


def _reading(tree: Tree, place: Placement, matches: dict[str, Match]) -> Reading | None:
    image_suffix = _suffix_argument(matches, place.splits, "image")
    mask_suffix = _suffix_argument(matches, place.splits, "mask")
    if image_suffix is None or mask_suffix is None:
        return None
    pairs = sum(len(m.pairs) for m in matches.values())
    train_images, train_masks = place.folders(place.splits["train"])
    where = (f"images and masks side by side in {train_images}/" if train_images == train_masks
             else f"images in {train_images}/, masks in {train_masks}/")  # fmt: skip
    why = [f"{pairs} image/mask pairs by name ({where}, splits: "
           f"{', '.join(place.splits.values())})"]  # fmt: skip
    lonely = sum(m.lonely_images + m.lonely_masks for m in matches.values())
    notes = [f"{lonely} image(s) or mask(s) have no partner"] if lonely else []
    args = {"images_dir": place.images_dir}
    classes = _class_file(tree, place)
    mask_paths = {place.splits[s]: [tree.path(place.folders(place.splits[s])[1], mask)
                                    for _, mask in m.pairs.values()]
                  for s, m in matches.items()}  # fmt: skip
    split_args = split_arguments(place.splits)
    if place.split_files:
        split_args["split_files"] = place.split_files
        why.append(f"splits listed in {place.split_files.replace('{split}', '<split>')}")
    labels = {**args, "labels_dir": place.masks_dir}
    if mask_suffix:
        labels["label_suffix"] = mask_suffix
    label_notes = []  # said of label-map readings only: the folder format cuts image suffixes
    if image_suffix:  # label maps pair by the image's whole stem
        label_notes.append(f"image names end in {image_suffix}, which label maps do not cut off")
    if classes is not None:
        why.append(f"class list {classes}")
        return Reading("labelmap", tree.root, {**labels, "classes_file": classes, **split_args},
                       why, notes=notes + label_notes,
                       found={"matches": matches, "place": place, "masks": mask_paths})  # fmt: skip
    values = read_values([p for paths in mask_paths.values() for p in paths])
    kind, said = values.kind()
    why.append(f"{said} in {values.read} of {values.of} masks")
    found = {"matches": matches, "place": place, "masks": mask_paths, "values": values}
    if kind != "folder":
        notes += label_notes
        notes.append("no class list: classes are named by their ids; write classes.txt "
                     "(`id name` per line) to name them")  # fmt: skip
        if kind == "colour":
            notes.append("colour masks need a colour table (CVAT's labelmap.txt, `name:r,g,b::`)")
        return Reading("labelmap", tree.root, {**labels, **split_args}, why, notes=notes,
                       found=found)  # fmt: skip
    args["masks_dir"] = place.masks_dir
    if mask_suffix:
        args["mask_suffix"] = mask_suffix
    if image_suffix:
        args["image_suffix"] = image_suffix
    threshold = values.threshold()
    if threshold is not None:
        args["mask_threshold"] = threshold
        why.append("dim foreground: mask_threshold=0 (every non-zero pixel is foreground)")
    return Reading("folder", tree.root, {**args, **split_args}, why, notes=notes, found=found)


def _class_file(tree: Tree, place: Placement) -> str | None:
    """The class list under the root, else in the train split's folder (Roboflow's per-split
    `_classes.csv`); relative to the root."""
    for rel in dict.fromkeys((".", place.splits["train"])):
        folder = tree.get(rel)
        names = [n for n in DEFAULT_FILES if folder is not None and n in folder.files]
        if names:
            return join(rel, names[0])
    return None
