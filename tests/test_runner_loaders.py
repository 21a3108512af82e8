"""How the runner feeds the model: how many DataLoader workers, and which splits it decodes once
into the sample cache (samexp.data.memo)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from samexp import runner
from samexp.data.folder import folder_splits
from samexp.data.memo import MemoDataset
from samexp.data.splits import DatasetSplits
from samexp.errors import SamexpError
from tests.conftest import IMG_SIZE

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def splits(shapes_root: Path) -> DatasetSplits:
    """8 shapes: 6 train, 2 carved for validation; 4 test."""
    return folder_splits("shapes", str(shapes_root), IMG_SIZE).carve_val(0.25, seed=0)


@pytest.mark.parametrize(("cores", "expected"), [(2, 1), (16, 8), (64, 8), (1, 0)])
def test_workers_default_to_none_on_cpu_and_half_the_cores_up_to_8_on_cuda(
    monkeypatch, cores, expected
):
    monkeypatch.setattr(runner.os, "cpu_count", lambda: cores)
    assert runner._num_workers(None, CPU) == 0
    assert runner._num_workers(None, CUDA) == expected


def test_a_configured_worker_count_wins_on_any_device():
    assert runner._num_workers(3, CPU) == 3
    assert runner._num_workers(0, CUDA) == 0


@pytest.mark.parametrize(
    ("override", "key"),
    [("trainer.num_workers=-1", "trainer.num_workers"),
     ("trainer.sample_cache_gb=-0.5", "trainer.sample_cache_gb")],
)  # fmt: skip
def test_negative_worker_count_or_cache_size_is_refused_before_a_model_is_built(
    make_config, monkeypatch, override, key
):
    monkeypatch.setattr(runner, "build", lambda node, **kw: pytest.fail(f"built {node._target_}"))
    with pytest.raises(SamexpError, match=key):
        runner.run(make_config(override))


def _loaders(splits: DatasetSplits, trainer):
    workers = runner._num_workers(trainer.num_workers, CPU)
    cache_bytes = runner._sample_cache_bytes(trainer.sample_cache_gb)
    return runner._loaders(splits, trainer, CPU, workers, cache_bytes)


def test_every_split_is_decoded_once_before_training_and_served_unchanged(
    make_config, splits, caplog
):
    with caplog.at_level(logging.INFO, logger="samexp.runner"):
        train, val, test = _loaders(splits, make_config().trainer)
    assert "sample cache: val 2 of 2, train 6 of 6, test 4 of 4 images in memory" in caplog.text
    for loader, split in ((val, splits.val), (test, splits.test)):
        assert isinstance(loader.dataset, MemoDataset)
        assert loader.dataset.cached == len(split)
        served = [image for batch in loader for image in batch.images]
        assert all(torch.equal(a, split[i].image) for i, a in enumerate(served))
    assert train.dataset.cached == len(splits.train)


def test_an_augmented_train_split_stays_out_of_the_cache(make_config, splits, caplog):
    splits.train.transform = lambda image, masks: (image, masks)
    with caplog.at_level(logging.INFO, logger="samexp.runner"):
        train, _, _ = _loaders(splits, make_config().trainer)
    assert train.dataset.cached == 0
    assert "train off (augmented)" in caplog.text


def test_a_zero_cache_size_turns_the_cache_off(make_config, splits):
    _, val, _ = _loaders(splits, make_config("trainer.sample_cache_gb=0").trainer)
    assert val.dataset.cached == 0


def test_workers_are_kept_across_epochs(make_config, splits):
    loaders = _loaders(splits, make_config("trainer.num_workers=2").trainer)
    assert all(loader.num_workers == 2 and loader.persistent_workers for loader in loaders)
    val = loaders[1]
    epochs = [[name for batch in val for name in batch.names] for _ in range(2)]
    assert epochs[0] == epochs[1] == splits.val.names
