"""Polygons that reach outside their image: a near miss is clipped to the image, counted in the
split's summary (`clipped_outside`) and said in one line per split, the same in every polygon
format (and as predict says its boxes: `samexp.data.bounds`); a vertex far outside is refused."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samexp.config.errors import DatasetError
from samexp.data.bounds import clipped_line, far_point, reach
from samexp.data.coco import CocoDataset
from samexp.data.coco_json import read_coco
from samexp.data.frame import Pipeline
from samexp.data.labelme import LabelmeDataset, read_labelme
from samexp.data.yolo import YoloDataset, read_yolo_split
from tests.conftest import IMG_SIZE

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 48, 64
Polygon = list[tuple[float, float]]


def _rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))


def _coco(root: Path, polygons: dict[str, Polygon]) -> list:
    images = [{"id": i, "file_name": f"{n}.png", "height": H, "width": W}
              for i, n in enumerate(polygons, 1)]  # fmt: skip
    anns = [{"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
             "segmentation": [[c for xy in p for c in xy]]}
            for i, p in enumerate(polygons.values(), 1)]  # fmt: skip
    for name in polygons:
        _image(root / f"{name}.png")
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations.json").write_text(json.dumps(data))
    return read_coco(root / "annotations.json", root)


def _yolo(root: Path, polygons: dict[str, Polygon]) -> list:
    for name, polygon in polygons.items():
        _image(root / "images" / "train" / f"{name}.png")
        label = root / "labels" / "train" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("0 " + " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in polygon) + "\n")
    return read_yolo_split(root / "images" / "train", ["thing"])


def _labelme(root: Path, polygons: dict[str, Polygon]) -> list:
    for name, polygon in polygons.items():
        _image(root / "train" / f"{name}.png")
        shape = {"label": "thing", "points": [list(xy) for xy in polygon], "shape_type": "polygon"}
        data = {"imagePath": f"{name}.png", "imageHeight": H, "imageWidth": W, "shapes": [shape]}
        (root / "train" / f"{name}.json").write_text(json.dumps(data))
    return read_labelme(root / "train", root)


# format: (reader, dataset, how far past the right edge a near miss reaches in it); YOLO's
# normalised coordinates may pass the border by 1% (more is refused as not normalised)
FORMATS: dict[str, tuple[Callable, type, float]] = {
    "coco": (_coco, CocoDataset, 12.0),
    "yolo": (_yolo, YoloDataset, 0.01 * W),
    "labelme": (_labelme, LabelmeDataset, 12.0),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_near_miss_is_clipped_counted_and_said_once_per_split(fmt, tmp_path, caplog):
    read, dataset, past = FORMATS[fmt]
    polygons = {"a": _rect(40, 10, W + past, 20), "b": _rect(40, 10, W, 20),  # b: a, clipped
                "c": _rect(-past, 30, 20, 40), "d": _rect(5, 5, 15, 15)}  # fmt: skip
    with caplog.at_level(logging.WARNING):
        images = read(tmp_path, polygons)
        split = dataset(images, Pipeline(IMG_SIZE), "train")
    by_name = {im.name: im for im in images}
    decoded = {n: mask_utils.decode(by_name[n].rles[0]) for n in ("a", "b")}
    assert np.array_equal(decoded["a"], decoded["b"])  # the part outside the image is dropped
    assert split.summary()["clipped_outside"] == 2
    said = [r.getMessage() for r in caplog.records if "reach outside" in r.getMessage()]
    shown = f"{past:,.0f}" if past >= 1 else f"{past:.1f}"
    assert len(said) == 1 and said[0].startswith(
        f"train: 2 polygon(s) on 2 image(s) reach outside their image (by up to {shown} px: "
    ), said
    assert said[0].endswith("); the parts outside are clipped"), said


@pytest.mark.parametrize("fmt", ["coco", "labelme"])  # YOLO refuses it as not normalised
def test_a_vertex_far_outside_is_refused_naming_the_file(fmt, tmp_path):
    read, _, _ = FORMATS[fmt]
    with pytest.raises(DatasetError, match=r"\(200, 10\) lies far outside the 64×48 image"):
        read(tmp_path, {"a": _rect(40, 10, 200, 20)})


@pytest.mark.parametrize(
    "points, expected",
    [([(0, 0), (W, H)], 0.0),  # edges are inside
     ([(-3, 5), (10, 10)], 3.0),
     ([(10, H + 7.5), (W + 2, 0)], 7.5)],
)  # fmt: skip
def test_reach_is_how_far_the_farthest_point_lies_past_an_edge(points, expected):
    assert reach(np.array(points, dtype=float), (H, W)) == expected


@pytest.mark.parametrize(
    "point, far",
    [((2 * W, 0), False), ((-W, H), False), ((2 * W + 1, 0), True), ((0, -H - 1), True)],
)  # fmt: skip
def test_a_near_miss_reaches_at_most_the_images_own_size_past_an_edge(point, far):
    assert (far_point(np.array([point], dtype=float), (H, W)) is not None) == far


def test_the_clipped_line_names_counts_reach_and_the_first_places():
    per_image = [[("a.txt line 1", 3.0), ("a.txt line 2", 12.4)], [], [("b.txt line 1", 0.6)]]
    assert clipped_line("train", "polygon(s)", per_image) == (
        "train: 3 polygon(s) on 2 image(s) reach outside their image (by up to 12 px: a.txt line "
        "1, a.txt line 2, b.txt line 1); the parts outside are clipped"
    )
    assert clipped_line("train", "polygon(s)", [[], []]) is None
