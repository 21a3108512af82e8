"""Where a COCO dataset's files are: the layout is found from the files under the root, so the
exports of the usual annotation tools load without overrides.

  pre-split  <root>/<split>/{images/,annotations.json} for train and val (and test)
  roboflow   <root>/{train,valid,test}/_annotations.coco.json beside the images
  single     <root>/annotations.json (+ <root>/images/, or file_names relative to the root:
             labelme2coco's JPEGImages/...)
  cvat       <root>/annotations/instances_<subset>.json + <root>/images/ (CVAT's "COCO 1.0")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from samexp.errors import DatasetError

ROBOFLOW_FILE = "_annotations.coco.json"  # Roboflow's name, in every split folder
VAL_ALIASES = ("valid",)  # Roboflow's name for the val split


@dataclass(frozen=True)
class CocoFile:
    """One annotations file and the folder its `file_name`s are first looked up in."""

    annotations: Path
    images_dir: Path


@dataclass(frozen=True)
class CocoLayout:
    kind: str  # pre-split, roboflow, single, cvat: for the log line
    train: CocoFile  # single and cvat: the one file, whose images are split by val_size
    val: CocoFile | None = None  # the dataset's own val split (else carved from train)
    test: CocoFile | None = None  # None: held out from train's file


def _split_file(base: Path, split: str, annotations: str, images_dir: str) -> CocoFile | None:
    """`<base>/<split>/<annotations>`, else Roboflow's `_annotations.coco.json` there."""
    for name in (annotations, ROBOFLOW_FILE):
        path = base / split / name
        if path.is_file():
            return CocoFile(path, base / split / images_dir)
    return None


def _pre_split(base: Path, train: CocoFile, annotations: str, images_dir: str,
               val_split: str, test_split: str) -> CocoLayout:  # fmt: skip
    kind = "roboflow" if train.annotations.name == ROBOFLOW_FILE else "pre-split"
    names = dict.fromkeys((val_split, *VAL_ALIASES))  # ordered, without repeats
    val = next((f for s in names if (f := _split_file(base, s, annotations, images_dir))), None)
    test = _split_file(base, test_split, annotations, images_dir)
    if test is not None:
        return CocoLayout(kind, train, val=val, test=test)
    if val is not None:  # train + val only: val is what is evaluated (test/* metrics)
        return CocoLayout(kind, train, test=val)
    expected = base / val_split / train.annotations.name
    raise DatasetError(
        f"{expected} does not exist: a pre-split COCO dataset needs a {val_split}/ (or "
        f"{'/, '.join(VAL_ALIASES)}/) or {test_split}/ part beside {train.annotations.parent}; "
        f"add one, or name them with dataset.val_split=/dataset.test_split="
    )


def _cvat_file(base: Path, images_dir: str) -> CocoFile | None:
    """CVAT's `annotations/instances_<subset>.json`, when there is exactly one."""
    found = sorted((base / "annotations").glob("instances_*.json"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DatasetError(
            f"{base / 'annotations'} holds {len(found)} CVAT annotation files ({names}); choose "
            f"one with dataset.annotations=annotations/{found[0].name} "
            f"dataset.images_dir={images_dir}"
        )
    return CocoFile(found[0], base / images_dir) if found else None


def find_layout(base: Path, annotations: str, images_dir: str, train_split: str,
                val_split: str, test_split: str) -> CocoLayout:  # fmt: skip
    """The first layout whose files exist, in the order of the module docstring."""
    train = _split_file(base, train_split, annotations, images_dir)
    if train is not None:
        return _pre_split(base, train, annotations, images_dir, val_split, test_split)
    if (base / annotations).is_file():
        return CocoLayout("single", CocoFile(base / annotations, base / images_dir))
    cvat = _cvat_file(base, images_dir)
    if cvat is not None:
        return CocoLayout("cvat", cvat)
    raise DatasetError(
        f"no COCO annotations in {base}: expected {base / annotations} (one file, split by "
        f"val_size), {base / train_split / annotations} and {base / val_split / annotations}, "
        f"Roboflow's {train_split}/{ROBOFLOW_FILE} or CVAT's annotations/instances_*.json; "
        f"elsewhere: dataset.annotations=<path under the root>"
    )
