"""How a run feeds the model (samexp.data.loading): how many DataLoader workers, and which splits
are decoded once into the sample cache (samexp.data.memo)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from samexp import runner
from samexp.config.errors import SamexpError
from samexp.data import loading
from samexp.data.folder import folder_splits
from samexp.data.frame import Pipeline
from samexp.data.memo import MemoDataset
from samexp.data.splits import DatasetSplits
from tests.conftest import IMG_SIZE

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def splits(shapes_root: Path) -> DatasetSplits:
    """8 shapes: 6 train, 2 carved for validation; 4 test."""
    return folder_splits("shapes", str(shapes_root), Pipeline(IMG_SIZE)).carve_val(0.25, seed=0)


@pytest.mark.parametrize(("cores", "expected"), [(2, 1), (16, 8), (64, 8), (1, 0)])
def test_workers_default_to_none_on_cpu_and_half_the_cores_up_to_8_on_cuda(
    monkeypatch, cores, expected
):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert loading.num_workers(None, CPU) == 0
    assert loading.num_workers(None, CUDA) == expected


def test_a_configured_worker_count_wins_on_any_device():
    assert loading.num_workers(3, CPU) == 3
    assert loading.num_workers(0, CUDA) == 0


def test_the_sample_cache_size_is_given_in_gibibytes():
    assert loading.sample_cache_bytes(2.0) == 2 * 2**30
    assert loading.sample_cache_bytes(0.5) == 2**29
    assert loading.sample_cache_bytes(0) == 0


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
    """The loaders a CPU run builds from the trainer config."""
    return loading.loaders(
        splits,
        batch_size=trainer.batch_size,
        seed=trainer.seed,
        device=CPU,
        workers=loading.num_workers(trainer.num_workers, CPU),
        cache_bytes=loading.sample_cache_bytes(trainer.sample_cache_gb),
    )


def test_every_split_is_decoded_once_before_training_and_served_unchanged(make_config, splits):
    loaders = _loaders(splits, make_config().trainer)
    for loader, split in zip(loaders, (splits.train, splits.val, splits.test), strict=True):
        assert isinstance(loader.dataset, MemoDataset)
        assert loader.dataset.cached == len(split)  # filled up front, before any batch is read
    train, val, test = loaders
    for loader, split in ((val, splits.val), (test, splits.test)):
        served = [image for batch in loader for image in batch.images]
        assert all(torch.equal(a, split[i].image) for i, a in enumerate(served))


def test_an_augmented_train_split_stays_out_of_the_cache(make_config, splits):
    splits.train.transform = lambda image, masks: (image, masks)
    train, val, test = _loaders(splits, make_config().trainer)
    assert train.dataset.augmented
    assert train.dataset.cached == 0
    assert val.dataset.cached == len(splits.val)
    assert test.dataset.cached == len(splits.test)


def test_a_zero_cache_size_turns_the_cache_off(make_config, splits):
    loaders = _loaders(splits, make_config("trainer.sample_cache_gb=0").trainer)
    assert [loader.dataset.cached for loader in loaders] == [0, 0, 0]


def test_workers_are_kept_across_epochs(make_config, splits):
    loaders = _loaders(splits, make_config("trainer.num_workers=2").trainer)
    assert all(loader.num_workers == 2 and loader.persistent_workers for loader in loaders)
    val = loaders[1]
    epochs = [[name for batch in val for name in batch.names] for _ in range(2)]
    assert epochs[0] == epochs[1] == splits.val.names


def test_a_worker_survives_the_signals_that_ask_the_run_to_stop(splits):
    train, _, _ = loading.loaders(splits, batch_size=2, seed=0, device=CPU, workers=1,
                                  cache_bytes=0)  # fmt: skip
    batches = iter(train)
    next(batches)
    (pid,) = [w.pid for w in batches._workers]
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(pid, sig)
    time.sleep(0.5)
    assert sum(1 for _ in batches) == len(train) - 1  # the epoch goes on to its end
