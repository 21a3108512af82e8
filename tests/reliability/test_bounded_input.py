"""Files that ask samexp to allocate without bound (YAML alias bombs, a million annotations on one
image, a PNG header claiming 10⁵×10⁵ pixels, a polygon pycocotools would trace for gigabytes) are
refused while they are read, in one line naming the file and the limit (`samexp.config.limits`).

Each row builds its file in `tmp_path`, small: where the real limit would need a large file, the
row lowers it with its `SAMEXP_MAX_*` variable, as a user would raise it.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samexp.config.errors import ConfigValueError, DatasetError
from samexp.data.base import imread_unchanged
from samexp.data.coco_json import read_coco
from samexp.data.frame import Pipeline
from samexp.data.labelmap import LabelMapDataset
from samexp.data.labelme import read_labelme
from samexp.data.yolo import read_data_yaml, read_yolo_split
from samexp.predict.prompt_file import read_prompt_file

H, W = 48, 64


def png_header(width: int, height: int) -> bytes:
    """A whole, tiny PNG whose header claims width×height 1-bit pixels (one empty row of data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))  # fmt: skip


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((H, W, 3), 90, np.uint8))
    return path


def _coco(root: Path, segmentations: list, *, raw: str | None = None) -> Callable[[], object]:
    """images/a.png with one annotation per segmentation (or the JSON text `raw`)."""
    _image(root / "images" / "a.png")
    anns = [{"id": i, "image_id": 1, "category_id": 1, "segmentation": s}
            for i, s in enumerate(segmentations, 1)]  # fmt: skip
    (root / "a.json").write_text(raw if raw is not None else json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "blob"}],
    }))  # fmt: skip
    return lambda: read_coco(root / "a.json", root / "images")


SQUARE = [[4, 4, 20, 4, 20, 20, 4, 20]]  # one polygon: a segmentation


def alias_bomb(root: Path) -> Callable[[], object]:
    lol = ", ".join(["lol"] * 9)
    levels = [f"a0: &a0 [{lol}]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)
    ]
    (root / "data.yaml").write_text("\n".join(levels) + "\nnames: *a8\n")
    return lambda: read_data_yaml(root / "data.yaml")


def merge_key(root: Path) -> Callable[[], object]:
    (root / "data.yaml").write_text("base: &base {nc: 1}\nsplit:\n  <<: *base\nnames: [cat]\n")
    return lambda: read_data_yaml(root / "data.yaml")


def deep_yaml(root: Path) -> Callable[[], object]:
    (root / "data.yaml").write_text("names: " + "[" * 5_000 + "]" * 5_000)
    return lambda: read_data_yaml(root / "data.yaml")


def large_yaml(root: Path) -> Callable[[], object]:
    (root / "data.yaml").write_text("names: [" + ", ".join(["cat"] * 100) + "]\n")
    return lambda: read_data_yaml(root / "data.yaml")


def many_annotations_on_one_image(root: Path) -> Callable[[], object]:
    return _coco(root, [SQUARE] * 101)


def many_annotations_in_a_file(root: Path) -> Callable[[], object]:
    return _coco(root, [SQUARE] * 6)


def large_json(root: Path) -> Callable[[], object]:
    return _coco(root, [SQUARE] * 30)


def deep_json(root: Path) -> Callable[[], object]:
    return _coco(root, [], raw="[" * 100_000 + "]" * 100_000)


def far_vertex(root: Path) -> Callable[[], object]:
    return _coco(root, [[[0, 0, 1e9, 0, 1e9, 1e9]]])  # crashed pycocotools (SIGSEGV)


def nan_vertex(root: Path) -> Callable[[], object]:
    return _coco(root, [[[0, 0, float("nan"), 0, 10, 10]]])


def zigzag(points: int, width: float, height: float) -> list[float]:
    """A polygon of `points` vertices zigzagging across the whole width, top to bottom."""
    xs, ys = np.tile([0.0, width], points // 2), np.linspace(0, height, points)
    return np.stack([xs, ys], 1).ravel().tolist()


def zigzag_polygon(root: Path) -> Callable[[], object]:
    return _coco(root, [[zigzag(2_000, W, H)]])


def rle_too_long(root: Path) -> Callable[[], object]:
    return _coco(root, [{"size": [H, W], "counts": [0, 100_000_000]}])


def rle_of_another_image(root: Path) -> Callable[[], object]:
    other = mask_utils.encode(np.asfortranarray(np.ones((1000, 1000), np.uint8)))
    return _coco(root, [{"size": [H, W], "counts": other["counts"].decode()}])


def mask_pixels(root: Path) -> Callable[[], object]:
    return _coco(root, [SQUARE] * 4)


def _yolo(root: Path, lines: list[str]) -> Callable[[], object]:
    _image(root / "images" / "train" / "a.png")
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    return lambda: read_yolo_split(root / "images" / "train", ["blob"])


def yolo_lines(root: Path) -> Callable[[], object]:
    return _yolo(root, ["0 0.1 0.1 0.5 0.1 0.5 0.5"] * 4)


def yolo_zigzag(root: Path) -> Callable[[], object]:
    return _yolo(root, ["0 " + " ".join(f"{v:.4f}" for v in zigzag(40_000, 1, 1))])  # 0.5 MB


def _labelme(root: Path, shapes: list, image_data: bytes | None = None) -> Callable[[], object]:
    import base64

    (root / "train").mkdir(parents=True)
    if image_data is None:
        _image(root / "train" / "a.png")
    (root / "train" / "a.json").write_text(json.dumps({
        "imagePath": "a.png", "imageHeight": H, "imageWidth": W, "shapes": shapes,
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
    }))  # fmt: skip
    return lambda: read_labelme(root / "train", root)


SHAPE = {"label": "blob", "shape_type": "polygon", "points": [[4, 4], [20, 4], [20, 20]]}


def labelme_shapes(root: Path) -> Callable[[], object]:
    return _labelme(root, [SHAPE] * 4)


def labelme_image_data_bomb(root: Path) -> Callable[[], object]:
    return _labelme(root, [SHAPE], image_data=png_header(100_000, 100_000))


def image_bomb(root: Path) -> Callable[[], object]:
    (root / "bomb.png").write_bytes(png_header(100_000, 100_000))  # 10¹⁰ pixels in 60 bytes
    return lambda: imread_unchanged(root / "bomb.png")


def image_over_lowered_limit(root: Path) -> Callable[[], object]:
    return lambda: imread_unchanged(_image(root / "a.png"))


def _labelmap(root: Path, classes: str, ids: int) -> Callable[[], object]:
    _image(root / "train" / "images" / "a.png")
    (root / "train" / "labels").mkdir(parents=True)
    label = (np.arange(H * W) % ids + 1).reshape(H, W).astype(np.uint8)
    assert cv2.imwrite(str(root / "train" / "labels" / "a.png"), label)
    (root / "classes.txt").write_text(classes)
    return lambda: LabelMapDataset(str(root), "train", pipeline=Pipeline(32))


def labelmap_classes(root: Path) -> Callable[[], object]:
    return _labelmap(root, "".join(f"{i} c{i}\n" for i in range(1, 5)), ids=4)


def large_class_list(root: Path) -> Callable[[], object]:
    return _labelmap(root, "".join(f"{i} c{i}\n" for i in range(1, 201)), ids=4)


def large_prompt_file(root: Path) -> Callable[[], object]:
    (root / "boxes.json").write_text(json.dumps({"a.png": [[1, 1, 9, 9]] * 20}))
    return lambda: read_prompt_file(root / "boxes.json")


def limit(name: str, value: int, unit: str) -> str:
    return f"samexp's limit is {value:,} {unit} (set SAMEXP_MAX_{name} to raise it)"


PER_FILE, PER_IMAGE = "annotations per file", "instances per image"
MASKS = "mask pixels per image (instances × height × width)"
JSON_FILE, TEXT_FILE = "bytes per JSON file", "bytes per text file"
OUTLINE = "pixels of polygon outline per annotation"
ALIAS = "(*name); samexp reads it without aliases, which a few lines can expand to gigabytes: write the values out"  # fmt: skip

# (build the file, SAMEXP_MAX_* lowered for the row, the message with {root} for tmp_path)
CASES = [
    pytest.param(alias_bomb, {}, f"{{root}}/data.yaml: line 2 uses a YAML alias {ALIAS}", id="yaml-alias-bomb"),
    pytest.param(merge_key, {}, f"{{root}}/data.yaml: line 3 uses a YAML alias {ALIAS}", id="yaml-merge-key"),
    pytest.param(deep_yaml, {}, "{root}/data.yaml: not valid YAML (nested too deeply)", id="yaml-nested-5000-deep"),
    pytest.param(large_yaml, {"TEXT_BYTES": 100}, f"{{root}}/data.yaml: the file is 508 bytes; {limit('TEXT_BYTES', 100, TEXT_FILE)}", id="yaml-over-text-limit"),
    pytest.param(many_annotations_on_one_image, {"INSTANCES_PER_IMAGE": 100}, f"{{root}}/a.json: image 1 has more than 100 annotations; {limit('INSTANCES_PER_IMAGE', 100, PER_IMAGE)}", id="coco-many-annotations-on-one-image"),
    pytest.param(many_annotations_in_a_file, {"ANNOTATIONS": 5}, f"{{root}}/a.json: it has more than 5 annotations; {limit('ANNOTATIONS', 5, PER_FILE)}", id="coco-annotations-per-file"),
    pytest.param(large_json, {"JSON_BYTES": 1000}, f"{{root}}/a.json: the file is 2,913 bytes; {limit('JSON_BYTES', 1000, JSON_FILE)}", id="coco-over-json-limit"),
    pytest.param(deep_json, {}, "{root}/a.json: not valid JSON (nested too deeply)", id="coco-nested-100000-deep"),
    pytest.param(far_vertex, {}, f"{{root}}/a.json: annotation 1: a polygon vertex (1e+09, 1e+09) lies far outside the {W}×{H} image; coordinates are pixels of the image", id="coco-polygon-vertex-at-1e9"),
    pytest.param(nan_vertex, {}, "{root}/a.json: annotation 1: a polygon coordinate is NaN or infinite", id="coco-polygon-nan"),
    pytest.param(zigzag_polygon, {"POLYGON_OUTLINE": 100_000}, f"{{root}}/a.json: annotation 1: its polygons' outline is 128,000 pixels long; {limit('POLYGON_OUTLINE', 100_000, OUTLINE)}", id="coco-polygon-zigzag"),
    pytest.param(rle_too_long, {}, f"{{root}}/a.json: annotation 1: its RLE runs cover 100,000,000 pixels, but its {W}×{H} image has 3,072; re-export the masks", id="coco-rle-runs-past-the-image"),
    pytest.param(rle_of_another_image, {}, f"{{root}}/a.json: annotation 1: its RLE runs cover 1,000,000 pixels, but its {W}×{H} image has 3,072; re-export the masks", id="coco-rle-string-of-another-size"),
    pytest.param(mask_pixels, {"MASK_PIXELS": 10_000}, f"{{root}}/a.json: a.png: 4 annotations on {W}×{H} pixels (12,288 mask pixels); {limit('MASK_PIXELS', 10_000, MASKS)}", id="coco-mask-pixels-per-image"),
    pytest.param(yolo_lines, {"INSTANCES_PER_IMAGE": 3}, f"{{root}}/labels/train/a.txt: 4 label lines; {limit('INSTANCES_PER_IMAGE', 3, PER_IMAGE)}", id="yolo-label-lines-per-image"),
    pytest.param(yolo_zigzag, {}, f"{{root}}/labels/train/a.txt line 1: its polygons' outline is 2,560,000 pixels long; {limit('POLYGON_OUTLINE', 2_000_000, OUTLINE)}", id="yolo-polygon-zigzag"),
    pytest.param(labelme_shapes, {"MASK_PIXELS": 10_000}, f"{{root}}/train/a.json: 4 shapes on {W}×{H} pixels (12,288 mask pixels); {limit('MASK_PIXELS', 10_000, MASKS)}", id="labelme-shapes-per-image"),
    pytest.param(labelme_image_data_bomb, {}, f"{{root}}/train/a.json: it has over 178,956,970 pixels; {limit('IMAGE_PIXELS', 178_956_970, 'decoded pixels per image')}", id="labelme-image-data-claims-1e10-pixels"),
    pytest.param(image_bomb, {}, f"{{root}}/bomb.png: it has over 178,956,970 pixels; {limit('IMAGE_PIXELS', 178_956_970, 'decoded pixels per image')}", id="png-header-claims-1e10-pixels"),
    pytest.param(image_over_lowered_limit, {"IMAGE_PIXELS": 1000}, f"{{root}}/a.png: it is {W}×{H} pixels; {limit('IMAGE_PIXELS', 1000, 'decoded pixels per image')}", id="image-over-pixel-limit"),
    pytest.param(labelmap_classes, {"MASK_PIXELS": 10_000}, f"{{root}}/train/labels/a.png: 4 classes on {W}×{H} pixels (12,288 mask pixels); {limit('MASK_PIXELS', 10_000, MASKS)}", id="labelmap-classes-per-image"),
    pytest.param(large_class_list, {"TEXT_BYTES": 1000}, f"{{root}}/classes.txt: the file is 1,584 bytes; {limit('TEXT_BYTES', 1000, TEXT_FILE)}", id="classes-txt-over-text-limit"),
    pytest.param(large_prompt_file, {"JSON_BYTES": 100}, f"{{root}}/boxes.json: the file is 291 bytes; {limit('JSON_BYTES', 100, JSON_FILE)}", id="prompt-file-over-json-limit"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "lowered", "message"), CASES)
def test_a_file_past_a_limit_is_refused_in_one_line_naming_it_and_the_limit(
    tmp_path, monkeypatch, build, lowered, message
) -> None:
    for name, value in lowered.items():
        monkeypatch.setenv(f"SAMEXP_MAX_{name}", str(value))
    load = build(tmp_path)
    with pytest.raises(DatasetError) as err:
        load()
    assert str(err.value) == message.format(root=tmp_path)
    assert "\n" not in str(err.value)


def test_a_million_annotations_on_one_image_stop_after_the_first_ten_thousand(tmp_path) -> None:
    """The issue's case at its real size: a 74 MB file, refused in the time it takes to read it."""
    _image(tmp_path / "images" / "a.png")
    ann = '{"id":%d,"image_id":1,"category_id":1,"segmentation":[[1,1,5,1,5,5]]}'
    body = ",".join(ann % i for i in range(1_000_000))
    (tmp_path / "a.json").write_text(
        '{"images":[{"id":1,"file_name":"a.png","height":48,"width":64}],'
        f'"categories":[{{"id":1,"name":"x"}}],"annotations":[{body}]}}'
    )
    start = time.perf_counter()
    with pytest.raises(DatasetError) as err:
        read_coco(tmp_path / "a.json", tmp_path / "images")
    assert time.perf_counter() - start < 5  # 0.2 s on 2 cores: 10⁴ of 10⁶ parsed
    assert str(err.value) == (
        f"{tmp_path}/a.json: image 1 has more than 10,000 annotations; "
        f"{limit('INSTANCES_PER_IMAGE', 10_000, PER_IMAGE)}"
    )


def test_a_file_under_every_limit_loads_as_before(tmp_path) -> None:
    polygon = zigzag(400, W, H)  # a detailed outline: 400 vertices, 25,600 px
    rle = mask_utils.encode(np.asfortranarray(np.pad(np.ones((8, 8), np.uint8), ((0, H - 8), (0, W - 8)))))  # fmt: skip
    images = _coco(tmp_path, [SQUARE, [polygon], {"size": [H, W], "counts": rle["counts"].decode()}])()  # fmt: skip
    assert [len(im.rles) for im in images] == [3]
    assert float(mask_utils.area(images[0].rles[2])) == 64


def test_a_nonsense_limit_in_the_environment_is_refused_naming_the_variable(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("SAMEXP_MAX_JSON_BYTES", "lots")
    load = large_json(tmp_path)
    with pytest.raises(ConfigValueError, match="^SAMEXP_MAX_JSON_BYTES='lots': must be a positive whole number$"):  # fmt: skip
        load()
