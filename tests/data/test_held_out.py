"""Specifications for a test split held out of data that has none: stable as images are added,
never sharing a file with train, reused by whoever scores the run later."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from samexp.config.errors import DatasetError
from samexp.data.folder import folder_splits
from samexp.data.frame import Pipeline
from samexp.data.held_out import stable_share
from tests.conftest import write_shapes_dataset


def only_train(tmp_path: Path, n: int, seed: int = 0) -> Path:
    return write_shapes_dataset(tmp_path / "data", {"train": n}, size=(8, 8), seed=seed)


def held_out(root: Path, **kwargs):
    return folder_splits(None, str(root), Pipeline(16), test_split=None, **kwargs)


def keys(splits, split: str) -> set[str]:
    return set(splits.files(split))


def test_data_without_a_test_split_gets_one_with_a_warning(tmp_path, caplog) -> None:
    root = only_train(tmp_path, 20)
    with caplog.at_level(logging.WARNING, logger="samexp.data.splits"):
        splits = held_out(root)
    assert "has no test split: holding out 20% of its images" in caplog.text
    assert "dataset.test_fraction=" in caplog.text
    assert splits.held_out == 0.2 and 1 <= len(splits.test) < 20
    assert len(splits.train) + len(splits.test) == 20
    assert not keys(splits, "train") & keys(splits, "test")


def test_the_held_out_files_are_those_whose_path_hash_falls_under_the_fraction(tmp_path) -> None:
    splits = held_out(only_train(tmp_path, 30), test_fraction=0.3)
    assert keys(splits, "test") == {k for k in keys(splits, "test") | keys(splits, "train")
                                    if stable_share(k) < 0.3}  # fmt: skip


def test_adding_images_never_moves_an_old_one_between_splits(tmp_path) -> None:
    root = only_train(tmp_path, 12)
    before = held_out(root, test_fraction=0.3)
    more = write_shapes_dataset(tmp_path / "more", {"train": 12}, size=(8, 8), seed=1)
    for side in ("images", "masks"):
        for path in (more / "train" / side).iterdir():
            shutil.copy(path, root / "train" / side / f"new_{path.name}")
    after = held_out(root, test_fraction=0.3)
    assert keys(before, "test") <= keys(after, "test")
    assert keys(before, "train") <= keys(after, "train")


def test_a_tiny_dataset_still_holds_out_one_image_and_trains_on_the_rest(tmp_path) -> None:
    splits = held_out(only_train(tmp_path, 2), test_fraction=0.01)
    assert (len(splits.train), len(splits.test)) == (1, 1)


REFUSED = [
    pytest.param(
        {"test_split": "train"},
        "dataset.train_split and dataset.test_split are both 'train'",
        id="train-split-is-the-test-split",
    ),  # fmt: skip
    pytest.param(
        {"test_split": "test", "test_fraction": 0.2},
        "dataset.test_fraction=0.2 but",
        id="a-fraction-beside-a-test-split",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED)
def test_a_test_split_that_could_hold_train_images_is_refused(tmp_path, overrides, message) -> None:
    root = write_shapes_dataset(tmp_path / "d", {"train": 3, "test": 2}, size=(8, 8))
    with pytest.raises(DatasetError, match=message):
        folder_splits(None, str(root), Pipeline(16), **overrides)


def test_splits_that_share_an_image_file_are_refused_naming_it(tmp_path) -> None:
    root = write_shapes_dataset(tmp_path / "d", {"train": 3, "test": 2}, size=(8, 8))
    for side in ("images", "masks"):  # the test folder links one train image in
        os.symlink(root / "train" / side / "shape0.png", root / "test" / side / "copy.png")
    with pytest.raises(DatasetError, match=r"train and test splits share 1 image file\(s\): "
                                           r"train/images/shape0.png"):  # fmt: skip
        folder_splits(None, str(root), Pipeline(16))


def test_a_later_evaluation_scores_the_files_the_run_held_out(tmp_path, caplog) -> None:
    root = only_train(tmp_path, 12)
    run = held_out(root, test_fraction=0.25)
    logged = run.files("test")
    later = held_out(root, test_fraction=0.5).with_test_files(logged, "run abc")
    assert later.files("test") == logged
    assert sorted(later.files("train") + logged) == sorted(run.files("train") + logged)
    (root / "train" / "images" / Path(logged[0]).name).unlink()
    (root / "train" / "masks" / Path(logged[0]).name).unlink()
    with caplog.at_level(logging.WARNING, logger="samexp.data.splits"):
        gone = held_out(root, test_fraction=0.25).with_test_files(logged, "run abc")
    assert "1 of the test files of run abc are no longer in" in caplog.text
    assert gone.files("test") == logged[1:]
