"""Images that are not what they claim: truncated files stop the run naming the file, names that are
not UTF-8 load, and symlinks that lead nowhere are skipped, named and counted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.config.errors import DatasetError
from samexp.data.coco_json import read_coco
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.data.labelmap import LabelMapDataset
from samexp.predict.run import list_images
from tests.config.test_cli import output, samexp
from tests.conftest import REPO, write_shapes_dataset

SIZE = 64


def _reencode(path: Path, ext: str) -> Path:
    """The same pixels in another format (cv2 writes JPEG, BMP and WebP with their usual ends)."""
    if ext == path.suffix:
        return path
    new = path.with_suffix(ext)
    assert cv2.imwrite(str(new), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
    path.unlink()
    return new


def _folder(root: Path, ext: str) -> tuple[Callable[[], object], dict[str, Path]]:
    write_shapes_dataset(root, {"train": 2})
    image = _reencode(root / "train" / "images" / "shape0.png", ext)
    load = lambda: FolderDataset(str(root), "train", pipeline=Pipeline(SIZE))  # noqa: E731
    return load, {"images": image, "masks": root / "train" / "masks" / "shape0.png"}


def _labelmap(root: Path, ext: str) -> tuple[Callable[[], object], dict[str, Path]]:
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "classes.txt").write_text("1 blob\n")
    rng = np.random.default_rng(0)
    image, label = root / "train" / "images" / f"a{ext}", root / "train" / "labels" / "a.png"
    assert cv2.imwrite(str(image), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    ids = np.zeros((96, 128), np.uint8)
    ids[20:70, 30:100] = 1
    ids[::7] = rng.integers(0, 2, (14, 128), dtype=np.uint8)  # some entropy, so a cut hits data
    assert cv2.imwrite(str(label), ids)
    load = lambda: LabelMapDataset(str(root), "train", pipeline=Pipeline(SIZE))  # noqa: E731
    return load, {"images": image, "labels": label}


def _coco(root: Path, ext: str) -> tuple[Callable[[], object], dict[str, Path]]:
    (root / "images").mkdir(parents=True)
    image = root / "images" / f"a{ext}"
    assert cv2.imwrite(
        str(image), np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    )
    polygon = [10, 10, 60, 10, 60, 50, 10, 50]
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": f"a{ext}", "height": 96, "width": 128}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [polygon]}],
        "categories": [{"id": 1, "name": "blob"}],
    }))  # fmt: skip
    return lambda: read_coco(root / "annotations.json", root / "images"), {"images": image}


FORMATS = {"folder": _folder, "labelmap": _labelmap, "coco": _coco}


def _cut(path: Path, keep: float = 1 / 3) -> tuple[int, int]:
    """Truncate a file as an interrupted copy does; (size before, size after)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return len(data), int(len(data) * keep)


# (format, which file is cut, image extension, why the message says it is truncated)
CASES = [
    pytest.param("folder", "images", ".jpg", "no JPEG end marker", id="folder-truncated-jpeg-image"),
    pytest.param("folder", "images", ".png", "no PNG end chunk", id="folder-truncated-png-image"),
    pytest.param("folder", "masks", ".png", "no PNG end chunk", id="folder-truncated-png-mask"),
    pytest.param("folder", "images", ".bmp", "its header says {full} bytes", id="folder-truncated-bmp"),
    pytest.param("folder", "images", ".webp", "its header says {full} bytes", id="folder-truncated-webp"),
    pytest.param("labelmap", "images", ".jpg", "no JPEG end marker", id="labelmap-truncated-image"),
    pytest.param("labelmap", "labels", ".png", "no PNG end chunk", id="labelmap-truncated-label"),
    pytest.param("coco", "images", ".jpg", "no JPEG end marker", id="coco-truncated-image"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "side", "ext", "why"), CASES)
def test_a_truncated_file_stops_construction_naming_it(tmp_path, fmt, side, ext, why) -> None:
    load, files = FORMATS[fmt](tmp_path, ext)
    full, size = _cut(files[side])
    with pytest.raises(DatasetError) as err:
        load()
    why = why.format(full=full)
    assert str(err.value) == (
        f"{files[side]} is truncated ({size} bytes, {why}); re-export it or remove it"
    )


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_an_image_truncated_after_construction_is_refused_when_read_not_returned_grey(
    tmp_path, ext
) -> None:
    load, files = _folder(tmp_path, ext)
    dataset = load()
    _cut(files["images"])
    with pytest.raises(DatasetError, match=f"{files['images']} is truncated"):
        dataset[dataset.names.index("shape0")]


def test_predict_refuses_a_truncated_input_before_building_the_model(tmp_path) -> None:
    _, files = _folder(tmp_path, ".jpg")
    _cut(files["images"])
    folder = str(files["images"].parent)
    for image, images in ((str(files["images"]), None), (None, folder)):
        with pytest.raises(DatasetError, match="shape0.jpg is truncated"):
            list_images(image, images)


_LINKS = {
    "loop.jpg": lambda d: os.symlink("loop.jpg", d / "loop.jpg"),
    "a.jpg and b.jpg": lambda d: (os.symlink("b.jpg", d / "a.jpg"), os.symlink("a.jpg", d / "b.jpg")),
    "gone.jpg": lambda d: os.symlink("nowhere.jpg", d / "gone.jpg"),
}  # fmt: skip
LINK_CASES = [
    pytest.param("images", "loop.jpg", ["loop.jpg: symlink loop"], id="symlink-loop"),
    pytest.param(
        "images",
        "a.jpg and b.jpg",
        ["a.jpg: symlink loop", "b.jpg: symlink loop"],
        id="symlink-loop-of-two",
    ),  # fmt: skip
    pytest.param(
        "images",
        "gone.jpg",
        ["gone.jpg: broken symlink (its target nowhere.jpg does not exist)"],
        id="broken-symlink",
    ),  # fmt: skip
    pytest.param("masks", "loop.jpg", ["loop.jpg: symlink loop"], id="symlink-loop-as-mask"),
]


@pytest.mark.parametrize(("side", "links", "warnings"), LINK_CASES)
def test_a_symlink_leading_nowhere_is_skipped_named_and_counted(
    tmp_path, caplog, side, links, warnings
) -> None:
    write_shapes_dataset(tmp_path, {"train": 2})
    folder = tmp_path / "train" / side
    _LINKS[links](folder)
    with caplog.at_level(logging.WARNING):
        dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(SIZE))
    for warning in warnings:
        assert f"{folder}: skipping {warning}" in caplog.text
    summary = dataset.summary()
    assert summary["loaded"] == 2 and summary["skipped_unreadable"] == len(warnings)
    assert [why for _, why in dataset.unreadable] == [f"{side[:-1]} {w}" for w in warnings]


def test_a_mask_that_is_a_symlink_loop_leaves_its_image_out_instead_of_failing(tmp_path) -> None:
    write_shapes_dataset(tmp_path, {"train": 2})
    mask = tmp_path / "train" / "masks" / "shape0.png"
    mask.unlink()
    os.symlink(mask.name, mask)
    dataset = FolderDataset(str(tmp_path), "train", pipeline=Pipeline(SIZE))
    assert dataset.names == ["shape1"]
    assert dataset.unreadable == [("shape0", "mask shape0.png: symlink loop")]


# Run apart: before the fix, OpenCV killed the whole process (exit 139) on such a name.
_NON_UTF8 = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import numpy as np
    from samexp.data.folder import FolderDataset
    from samexp.data.frame import Pipeline
    from samexp.config.errors import DatasetError
    from samexp.predict.outputs import write_mask

    root = Path(sys.argv[1])
    sample = FolderDataset(str(root), "train", pipeline=Pipeline(64))[0]
    assert sample.name == "ring\\\\xff2", sample.name  # printable in logs and MLflow
    out = root / os.fsdecode(b"out/ring\\xff2_mask.png")
    write_mask(out, np.ones((4, 4), bool))
    assert os.path.exists(os.fsencode(root) + b"/out/ring\\xff2_mask.png")
    data = (root / "train" / "images" / os.fsdecode(b"ring\\xff2.jpg")).read_bytes()
    (root / "train" / "images" / os.fsdecode(b"ring\\xff2.jpg")).write_bytes(data[: len(data) // 3])
    try:
        FolderDataset(str(root), "train", pipeline=Pipeline(64))
    except DatasetError as e:
        print(str(e).encode("utf-8").decode())  # a UTF-8 log file can hold the message
""")


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_a_file_name_that_is_not_utf8_loads_and_is_named_printably(tmp_path) -> None:
    write_shapes_dataset(tmp_path, {"train": 1})
    for side, ext in (("images", b".jpg"), ("masks", b".png")):
        folder = os.fsencode(tmp_path / "train" / side)
        image = cv2.imread(os.path.join(folder, b"shape0.png").decode(), cv2.IMREAD_UNCHANGED)
        ok, data = cv2.imencode(ext.decode(), image)
        with open(os.path.join(folder, b"ring\xff2" + ext), "wb") as f:
            f.write(data.tobytes())
        os.remove(os.path.join(folder, b"shape0.png"))
    result = subprocess.run(
        [sys.executable, "-c", _NON_UTF8, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ring\\xff2.jpg is truncated" in result.stdout


@pytest.mark.slow
def test_the_cli_stops_on_a_truncated_image_before_training_with_one_line(tmp_path) -> None:
    root = write_shapes_dataset(tmp_path / "data" / "rings", {"train": 4, "test": 2})
    image = _reencode(root / "train" / "images" / "shape1.png", ".jpg")
    _, size = _cut(image)
    result = samexp(tmp_path, f"data_root={tmp_path / 'data'}", "model=tiny")
    assert result.returncode == 2, output(result)
    errors = [line for line in output(result).splitlines() if "ERROR" in line]
    assert len(errors) == 1, output(result)
    assert f"{image} is truncated ({size} bytes, no JPEG end marker)" in errors[0]
    assert "Traceback" not in output(result)
    assert not (tmp_path / "hydra" / "adapter.safetensors").exists()
