"""`python -m samexp.data inspect ROOT` and `dataset=auto`: the line to pin, counts per split,
classes and mask values from a bounded sample; a refusal is one line and exit code 2."""

from __future__ import annotations

import logging

import pytest

from samexp.data.__main__ import main
from samexp.data.auto import auto_splits
from samexp.data.detect.values import SAMPLE
from samexp.data.frame import Pipeline
from samexp.data.inspect import inspect_text
from tests.conftest import IMG_SIZE
from tests.data import exports
from tests.data.test_detect import COCO, LABELME, _pairs, _splits, _write


def test_inspect_prints_the_line_counts_classes_and_mask_values(tmp_path):
    tree = _splits("{split}/images", "{split}/masks", train=["a", "b", "c"], test=["d"])
    root = _write(tmp_path / "cells", tree)
    lines = inspect_text(root).splitlines()
    assert lines[0].startswith(f"dataset=folder dataset.root={root} ")
    assert lines[1].startswith("read as folder: 4 image/mask pairs by name")
    assert [line.split() for line in lines[3:5]] == [["train", "3", "3"], ["test", "1", "1"]]
    assert lines[5:] == [
        "classes (1), instances: one per image; pixel counts from 4 of 4 masks:",
        "  object                       4   50.00% of pixels",  # the loader's category name
        "not classes: background (values ≤ 127): 50.00% of pixels",
        "mask values, from 4 of 4 masks: 0: 50.00%, 255: 50.00%",
    ]


# label maps as their tools write them: the classes a run trains (named through the class list or
# colour table, background and ignore ids left out as the loader leaves them), and the rest
LABEL_MAPS = {
    "CVAT colour label maps: colours are classes through labelmap.txt": (
        exports.cvat_segmentation_mask,
        ["  cell                         5   25.00% of pixels",
         "  nucleus                      5    3.52% of pixels",
         "not classes: background 0: 71.48% of pixels; ignored 255: none in the masks read",
         "mask values, from 5 of 5 masks: 0,0,0 background: 71.48%, 250,50,83 cell: 25.00%, "
         "61,61,245 nucleus: 3.52%"],
    ),
    "labelme2voc: 255 is labelme's __ignore__, not a class": (
        exports.labelme2voc,
        ["  cell                         5   25.00% of pixels",
         "  nucleus                      5    3.52% of pixels",
         "not classes: background 0: 65.23% of pixels; ignored 255: 6.25% of pixels",
         "mask values, from 5 of 5 masks: 0 background: 65.23%, 1 cell: 25.00%, "
         "2 nucleus: 3.52%, 255 ignored: 6.25%"],
    ),
    "VOC without a class list: the ids the loader trains, 0 and 255 apart": (
        exports.voc2012,
        ["  1                            5   25.00% of pixels",
         "  15                           5    3.52% of pixels",
         "not classes: background 0: 67.58% of pixels; ignored 255: 3.91% of pixels",
         "mask values, from 5 of 5 masks: 0 background: 67.58%, 1: 25.00%, 15: 3.52%, "
         "255 ignored: 3.91%"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("write, tail", LABEL_MAPS.values(), ids=LABEL_MAPS.keys())
def test_inspect_lists_the_classes_the_label_map_loader_trains(write, tail, tmp_path):
    lines = inspect_text(write(tmp_path / "export")).splitlines()
    header = "classes (2), instances: labels holding the class, in the masks read; pixel counts "
    assert lines[-5:] == [f"{header}from 5 of 5 masks:", *tail]


def table(text: str) -> list[str]:
    """The report from the line below the split table's header on."""
    lines = text.splitlines()
    return lines[lines.index("split       images  instances") + 1 :]


def test_a_folder_without_a_test_split_says_a_run_holds_one_out(tmp_path):
    text = inspect_text(_write(tmp_path / "d", _pairs("images", "masks", ["a", "b"])))
    assert "note: no test split: a run holds out 20% of the train images as its test split" in text


def test_inspect_says_how_many_masks_it_sampled(tmp_path):
    names = [f"{i:02d}" for i in range(SAMPLE + 4)]
    tree = _pairs("images", "masks", names, values=(0, 1)) | {"classes.txt": "0 bg\n1 cell\n"}
    lines = table(inspect_text(_write(tmp_path / "d", tree)))
    assert lines[0].split() == [".", str(SAMPLE + 4)]  # no instance count: not every label read
    assert f"pixel counts from {SAMPLE} of {SAMPLE + 4} masks:" in lines[1]
    assert lines[-1].startswith(f"mask values, from {SAMPLE} of {SAMPLE + 4} masks: ")


def test_labelme_ignore_shapes_are_no_class(tmp_path):
    ignore = dict(LABELME["shapes"][0], label="__ignore__")
    shapes = {"shapes": [*LABELME["shapes"], ignore]}
    lines = inspect_text(_write(tmp_path / "d", {"a.png": "img", "a.json": LABELME | shapes}))
    assert table(lines)[:4] == [
        ".                1          1",
        "classes (1), instances from the shapes:",
        "  cat                          1",
        "not classes: ignored __ignore__: 1 shape(s), skipped by the loader",
    ]


def test_inspect_counts_coco_instances_from_the_file(tmp_path):
    root = _write(tmp_path / "d", {"annotations.json": COCO, "images/a.png": "img"})
    text = inspect_text(root)
    assert "\n.                1          1\n" in text
    assert "cat" in text and "mask values: none (the annotations are polygons" in text


def test_the_command_exits_0_with_the_report_and_2_with_one_line(tmp_path, capsys):
    root = _write(tmp_path / "d", _pairs("images", "masks", ["a", "b"]))
    assert main(["inspect", str(root)]) == 0
    assert capsys.readouterr().out.startswith("dataset=folder ")
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dataset layout recognised" in err


def test_dataset_auto_logs_the_overrides_and_loads_with_the_format_factory(rings_root, caplog):
    with caplog.at_level(logging.INFO, logger="samexp.data.auto"):
        splits = auto_splits(str(rings_root), Pipeline(IMG_SIZE))
    assert (len(splits.train), len(splits.test), splits.name) == (8, 2, "rings")
    said = [r.getMessage() for r in caplog.records if r.name == "samexp.data.auto"]
    assert any(f"to pin it: dataset=folder dataset.root={rings_root.resolve()}" in m for m in said)


@pytest.mark.parametrize("prefer", ["coco"])
def test_dataset_auto_refuses_a_format_the_folder_is_not(prefer, rings_root):
    from samexp.config.errors import DatasetError

    with pytest.raises(DatasetError, match=f"dataset.prefer={prefer}: .* does not read as"):
        auto_splits(str(rings_root), Pipeline(IMG_SIZE), prefer=prefer)
