"""Specifications for `dataset.limit`: a seeded few of the train images, taken after the
validation split is carved, the same way for every format."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from samexp.config.errors import ConfigValueError
from samexp.config.schema import validate
from samexp.data.coco import coco_splits
from samexp.data.folder import folder_splits
from samexp.data.frame import Pipeline
from samexp.data.labelmap import labelmap_splits
from samexp.data.splits import DatasetSplits
from tests.conftest import compose_config, write_shapes_dataset
from tests.data.test_coco import _many
from tests.data.test_labelmap import write_labelmap

TRAIN = 10  # train images of every fixture here


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root, {"train": TRAIN, "test": 2, "val": 2}, size=(24, 32))


def limited(root: Path, limit: int | None, seed: int = 0, fraction: float = 0.2) -> DatasetSplits:
    return folder_splits("shapes", str(root), Pipeline(32), limit=limit).carve_val(fraction, seed)


def test_limit_keeps_that_many_train_images_and_the_same_seed_keeps_the_same_ones(shapes) -> None:
    splits = limited(shapes, 3)
    assert len(splits.train) == 3
    assert limited(shapes, 3).train.names == splits.train.names
    others = {tuple(limited(shapes, 3, seed=s).train.names) for s in range(1, 5)}
    assert others - {tuple(splits.train.names)}, "the seed does not change the subset"


def test_limit_leaves_the_carved_validation_split_and_the_test_split_untouched(shapes) -> None:
    full, few = limited(shapes, None), limited(shapes, 2)
    assert few.val.names == full.val.names and len(full.val) == 2  # carved from all 10
    assert few.test.names == full.test.names
    assert set(few.train.names) <= set(full.train.names)  # never a validation image


def test_limited_train_parts_of_one_seed_are_nested(shapes) -> None:
    parts = [set(limited(shapes, n, seed=3).train.names) for n in (1, 2, 4, 8)]
    assert all(a < b for a, b in zip(parts, parts[1:], strict=False))


def test_limit_applies_without_a_carve_and_beside_a_datasets_own_val_split(shapes) -> None:
    assert len(limited(shapes, 4, fraction=0).train) == 4
    own = folder_splits("shapes", str(shapes), Pipeline(32), val_split="val", limit=4).carve_val(
        0.2, 0
    )
    assert len(own.train) == 4 and len(own.val) == 2  # the own val split is not carved or cut


def test_summary_shows_the_limited_train_count(shapes) -> None:
    summary = limited(shapes, 3).summary()
    assert summary["train/loaded"] == 3 and summary["val/loaded"] == 2


def test_limit_larger_than_train_warns_and_trains_on_all(
    shapes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="samexp.data.splits"):
        splits = limited(shapes, 50)
    assert len(splits.train) == TRAIN - 2
    assert any(
        "dataset.limit=50 is more than the 8 train images" in r.message for r in caplog.records
    )


def test_limit_below_1_is_refused_naming_the_key(shapes) -> None:
    with pytest.raises(ConfigValueError, match=r"dataset.limit=0: must be >= 1"):
        folder_splits("shapes", str(shapes), Pipeline(32), limit=0)
    with pytest.raises(ConfigValueError, match=r"dataset.limit=-2: must be >= 1"):
        validate(compose_config(["dataset=labelmap", "dataset.limit=-2", "data_root=/data"]))


def test_every_format_takes_a_limit(tmp_path: Path, shapes: Path) -> None:
    layout = {f"m{i}": (1 + i % 3,) for i in range(TRAIN)}
    (tmp_path / "maps").mkdir()
    labelmaps = write_labelmap(tmp_path / "maps", {"train": layout, "test": {"t": (1,)}})
    coco = _many(tmp_path / "coco", TRAIN + 2)
    built = [
        folder_splits("shapes", str(shapes), Pipeline(32), limit=3),
        labelmap_splits("maps", str(labelmaps), Pipeline(32), limit=3),
        coco_splits("coco", str(coco), Pipeline(32), val_size=0.2, limit=3),
    ]
    assert [len(s.carve_val(0.2, seed=0).train) for s in built] == [3, 3, 3]


def test_a_limited_label_map_split_counts_the_instances_it_keeps(tmp_path: Path) -> None:
    layout = {f"m{i}": (1 + i % 3,) for i in range(TRAIN)}
    root = write_labelmap(tmp_path, {"train": layout, "test": {"t": (1,)}})
    splits = labelmap_splits("maps", str(root), Pipeline(32), limit=4).carve_val(0.2, seed=0)
    kept = Counter(c for sample in splits.train for c in sample.categories)
    summary = splits.summary()
    assert summary["train/instances"] == 4
    assert {n: summary[f"train/instances/{n}"] for n in ("cat", "dog", "bird")} == {
        n: kept[n] for n in ("cat", "dog", "bird")
    }


def test_a_class_the_limit_leaves_without_train_images_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = {f"m{i}": ((1,) if i < 9 else (2,)) for i in range(TRAIN)}  # one dog among 10
    root = write_labelmap(tmp_path, {"train": layout, "test": {"t": (1, 2)}})
    splits = labelmap_splits("maps", str(root), Pipeline(32), limit=2)
    with caplog.at_level(logging.WARNING, logger="samexp.data.splits"):
        limited = splits.carve_val(0, seed=0)
    assert "dog" not in {c for sample in limited.train for c in sample.categories}
    assert any("no train image kept holds dog" in r.message for r in caplog.records)


def test_runs_are_named_after_the_data_folder_unless_dataset_name_says_otherwise(tmp_path):
    from samexp.config.paths import dataset_name

    assert dataset_name(None, tmp_path / "bottles") == "bottles"
    assert dataset_name(None, f"{tmp_path}/bottles/") == "bottles"  # a trailing slash too
    assert dataset_name("caps", tmp_path / "bottles") == "caps"
