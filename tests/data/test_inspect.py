"""`python -m samexp.data inspect ROOT` and `dataset=auto`: the line to pin, counts per split,
classes and mask values from a bounded sample; a refusal is one line and exit code 2."""

from __future__ import annotations

import logging

import pytest

from samexp.data.__main__ import main
from samexp.data.auto import auto_splits
from samexp.data.inspect import inspect_text
from tests.conftest import IMG_SIZE
from tests.data.test_detect import COCO, _pairs, _splits, _write


def test_inspect_prints_the_line_counts_classes_and_mask_values(tmp_path):
    tree = _splits("{split}/images", "{split}/masks", train=["a", "b", "c"], test=["d"])
    root = _write(tmp_path / "cells", tree)
    lines = inspect_text(root).splitlines()
    assert lines[0].startswith(f"dataset=folder dataset.root={root} ")
    assert lines[1].startswith("read as folder: 4 image/mask pairs by name")
    assert [line.split() for line in lines[3:5]] == [["train", "3", "3"], ["test", "1", "1"]]
    assert "foreground" in lines[6] and "50.00% of pixels" in lines[6]
    assert lines[-1] == "mask values, from 4 of 4 masks: 0: 50.00%, 255: 50.00%"


def test_inspect_counts_label_map_classes_by_name(tmp_path):
    tree = _pairs("images", "masks", ["a", "b"], values=(0, 1, 2)) | {
        "classes.txt": "0 background\n1 cell\n2 nucleus\n"
    }
    text = inspect_text(_write(tmp_path / "d", tree))
    assert "classes (3), instances from the 2 masks read" in text
    assert [line.split()[:2] for line in text.splitlines() if "nucleus" in line] == [
        ["nucleus", "2"]
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
        splits = auto_splits(str(rings_root), IMG_SIZE)
    assert (len(splits.train), len(splits.test), splits.name) == (8, 2, "rings")
    said = [r.getMessage() for r in caplog.records if r.name == "samexp.data.auto"]
    assert any(f"to pin it: dataset=folder dataset.root={rings_root.resolve()}" in m for m in said)


@pytest.mark.parametrize("prefer", ["coco"])
def test_dataset_auto_refuses_a_format_the_folder_is_not(prefer, rings_root):
    from samexp.errors import DatasetError

    with pytest.raises(DatasetError, match=f"dataset.prefer={prefer}: .* does not read as"):
        auto_splits(str(rings_root), IMG_SIZE, prefer=prefer)
