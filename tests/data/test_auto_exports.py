"""`dataset=auto` on real exports: each layout written as its tool writes it
(`tests/data/exports.py`), what layout detection infers (the overrides `inspect` prints for the user
to pin), and that `dataset=auto dataset.root=<folder>` alone, and the printed line pinned, load the
same splits, and `inspect` lists the classes the loader trains. A layout two formats can read is
refused, naming the override that picks each."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from samexp.config.errors import DatasetError
from samexp.config.instantiate import build
from samexp.data.detect import detect
from samexp.data.frame import Pipeline
from samexp.data.inspect import inspect_counts
from samexp.data.splits import DatasetSplits
from tests.conftest import IMG_SIZE, compose_config
from tests.data import exports

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@dataclass(frozen=True)
class Layout:
    write: Callable[[Path], Path]
    line: str  # the inferred overrides, ROOT for the folder; a refusal: the pattern it matches
    counts: tuple[int, int, int] | None  # (train, val, test) as loaded; None: refused
    classes: tuple[str, ...] = ("object",)  # what the train samples' instances are named

    @property
    def name(self) -> str:
        return self.write.__name__


LAYOUTS = [
    # --- COCO ---
    Layout(
        exports.roboflow_coco,
        "dataset=coco dataset.root=ROOT 'dataset.annotations=\"{split}/_annotations.coco.json\"' "
        "'dataset.images_dir=\"{split}\"' dataset.train_split=train dataset.test_split=test "
        "dataset.val_split=valid",
        (3, 2, 2),
        ("cell",),  # its placeholder category 0 is no class
    ),
    Layout(
        exports.cvat_coco,
        "dataset=coco dataset.root=ROOT dataset.annotations=annotations/instances_default.json "
        "dataset.images_dir=images dataset.train_split=. dataset.test_split=null",
        (3, 0, 2),
        ("cell",),
    ),
    Layout(
        exports.cvat_coco_project,
        "dataset=coco dataset.root=ROOT 'dataset.annotations=\"annotations/instances_{split}.json\"' "
        "dataset.images_dir=images dataset.train_split=Train dataset.test_split=Test",
        (3, 0, 2),
        ("cell",),
    ),
    Layout(
        exports.labelme2coco_example,
        "dataset=coco dataset.root=ROOT dataset.annotations=annotations.json dataset.images_dir=. "
        "dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
        ("cell",),  # `_background_` (id 0) is no class
    ),
    Layout(
        exports.labelme2coco_package,
        "dataset=coco dataset.root=ROOT 'dataset.annotations=\"{split}.json\"' "
        "dataset.images_dir=images dataset.train_split=train dataset.test_split=val",
        (3, 0, 2),
        ("cell",),
    ),
    Layout(
        exports.labelme_with_coco_beside,
        r"can be read 2 ways.*dataset.prefer=coco.*dataset=coco .*dataset.prefer=labelme.*"
        r"dataset=labelme ",
        None,
    ),
    # --- YOLO ---
    Layout(
        exports.ultralytics_seg,
        "dataset=yolo dataset.root=ROOT dataset.data_yaml=data.yaml "
        "'dataset.images_dir=\"images/{split}\"' dataset.train_split=train dataset.test_split=val",
        (3, 0, 2),
        ("cell", "nucleus"),
    ),
    Layout(
        exports.yolo_no_yaml,
        "dataset=yolo dataset.root=ROOT dataset.data_yaml=null dataset.images_dir=images "
        "dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
        ("0",),  # no class names anywhere: the ids
    ),
    Layout(
        exports.roboflow_yolov8,
        "dataset=yolo dataset.root=ROOT dataset.data_yaml=data.yaml "
        "'dataset.images_dir=\"{split}/images\"' dataset.train_split=train dataset.test_split=test "
        "dataset.val_split=valid",
        (3, 2, 2),
        ("cell", "nucleus"),
    ),
    # --- LabelMe ---
    Layout(
        exports.labelme_flat,
        "dataset=labelme dataset.root=ROOT dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
        ("cell",),
    ),
    Layout(
        exports.labelme_split_embedded,
        "dataset=labelme dataset.root=ROOT dataset.train_split=train dataset.test_split=test",
        (3, 0, 2),
        ("cell",),
    ),
    # --- label maps ---
    Layout(
        exports.roboflow_semantic,
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=. dataset.labels_dir=. "
        "dataset.label_suffix=_mask dataset.classes_file=train/_classes.csv dataset.train_split=train "
        "dataset.test_split=test dataset.val_split=valid",
        (3, 2, 2),
        ("cell", "nucleus"),
    ),
    Layout(
        exports.cvat_segmentation_mask,
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=JPEGImages "
        "dataset.labels_dir=SegmentationClass dataset.classes_file=labelmap.txt "
        "dataset.train_split=default dataset.test_split=null "
        "'dataset.split_files=\"ImageSets/Segmentation/{split}.txt\"'",
        (4, 0, 1),
        ("cell", "nucleus"),
    ),
    Layout(
        exports.labelme2voc,
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=JPEGImages "
        "dataset.labels_dir=SegmentationClass dataset.classes_file=class_names.txt "
        "dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
        ("cell", "nucleus"),  # 255 (`__ignore__`) is no class
    ),
    Layout(
        exports.voc2012,
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=JPEGImages "
        "dataset.labels_dir=SegmentationClass dataset.train_split=train dataset.test_split=val "
        "'dataset.split_files=\"ImageSets/Segmentation/{split}.txt\"'",
        (3, 0, 2),
        ("1", "15"),  # no class list: the ids; 255 borders are ignored
    ),
    Layout(
        exports.ade20k,
        "dataset=labelmap dataset.root=ROOT 'dataset.images_dir=\"images/{split}\"' "
        "'dataset.labels_dir=\"annotations/{split}\"' dataset.train_split=training "
        "dataset.test_split=validation",
        (3, 0, 2),
        ("1", "2"),
    ),
    Layout(
        exports.camvid,
        "dataset=labelmap dataset.root=ROOT 'dataset.images_dir=\"{split}\"' "
        "'dataset.labels_dir=\"{split}annot\"' dataset.train_split=train dataset.test_split=test "
        "dataset.val_split=val",
        (3, 2, 2),
        ("11", "3", "8"),  # no class list: the ids, so CamVid's void (11) is a class
    ),
    Layout(
        exports.class_id_masks,
        "dataset=labelmap dataset.root=ROOT dataset.images_dir=images dataset.labels_dir=masks "
        "dataset.classes_file=classes.txt dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
        ("cell", "nucleus"),
    ),
    # --- binary masks ---
    Layout(
        exports.folder_splits,
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.train_split=train dataset.test_split=test",
        (3, 0, 2),
    ),
    Layout(
        exports.binary_ones,
        "dataset=folder dataset.root=ROOT 'dataset.images_dir=\"images/{split}\"' "
        "'dataset.masks_dir=\"masks/{split}\"' dataset.mask_threshold=0 "
        "dataset.train_split=train dataset.test_split=val",
        (3, 0, 2),
    ),
    Layout(
        exports.kvasir_seg,
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=masks "
        "dataset.train_split=. dataset.test_split=null",
        (4, 0, 1),
    ),
    Layout(
        exports.drive,
        "dataset=folder dataset.root=ROOT dataset.images_dir=images dataset.masks_dir=1st_manual "
        "dataset.mask_suffix=_manual1 'dataset.image_suffix=\"_{split}\"' "
        "dataset.train_split=training dataset.test_split=test",
        (3, 0, 2),
    ),
    Layout(
        exports.isic2018,
        "dataset=folder dataset.root=ROOT 'dataset.images_dir=\"ISIC2018_Task1-2_{split}_Input\"' "
        "'dataset.masks_dir=\"ISIC2018_Task1_{split}_GroundTruth\"' "
        "dataset.mask_suffix=_segmentation dataset.train_split=Training dataset.test_split=Test "
        "dataset.val_split=Validation",
        (3, 2, 2),
    ),
    Layout(
        exports.isic2016,
        "dataset=folder dataset.root=ROOT 'dataset.images_dir=\"ISBI2016_ISIC_Part1_{split}_Data\"' "
        "'dataset.masks_dir=\"ISBI2016_ISIC_Part1_{split}_GroundTruth\"' "
        "dataset.mask_suffix=_Segmentation dataset.train_split=Training dataset.test_split=Test",
        (3, 0, 2),
    ),
]


def _load(overrides: list[str]) -> DatasetSplits:
    return build(compose_config(overrides).dataset, pipeline=Pipeline(IMG_SIZE), _convert_="object")


def _counts(splits: DatasetSplits) -> tuple[int, int, int]:
    parts = (splits.train, splits.val, splits.test)
    return tuple(len(part) if part is not None else 0 for part in parts)  # type: ignore[return-value]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_an_export_loads_with_dataset_auto_alone_as_the_line_it_prints(layout, tmp_path) -> None:
    root = layout.write(tmp_path / layout.name)
    if layout.counts is None:
        with pytest.raises(DatasetError, match=layout.line):
            detect(root)
        with pytest.raises(DatasetError, match=layout.line):
            _load(["dataset=auto", f"dataset.root={root}"])
        with pytest.raises(DatasetError, match=layout.line):
            inspect_counts(root)
        return
    line = detect(root).line()
    assert line.replace(str(root), "ROOT") == layout.line
    splits = _load(["dataset=auto", f"dataset.root={root}"])
    assert _counts(splits) == layout.counts
    assert sorted({name for sample in splits.train for name in sample.categories}) == list(
        layout.classes
    )
    assert _counts(_load(shlex.split(line))) == layout.counts  # pinned, it loads the same
    reading, counts = inspect_counts(root)  # what `inspect` prints: the classes the run trains
    assert (reading.line(), sorted(counts.per_class)) == (line, list(layout.classes))
