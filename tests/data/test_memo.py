"""The sample memo: an un-augmented split is decoded once, within its byte budget, and serves exactly
what the dataset would, to the main process and to DataLoader workers alike."""

from __future__ import annotations

import multiprocessing
import pickle
import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from samexp.data.base import Sample, collate, make_sample
from samexp.data.frame import Pipeline
from samexp.data.memo import WORKER_CONTEXT, MemoDataset, describe, memoize, sample_bytes

SIZE = 32  # SAM frame of the fake samples: 3 KB image + 1 KB masks + gt masks


class CountingDataset(Dataset[Sample]):
    """Synthetic samples that count their decodes in a process-shared counter (workers included)."""

    def __init__(self, n: int = 4, shape: tuple[int, int] = (24, 40)) -> None:
        self.n, self.shape = n, shape
        self.decodes = multiprocessing.get_context(WORKER_CONTEXT).Value("i", 0)
        self.transform = None

    @property
    def names(self) -> list[str]:
        return [f"item{i}" for i in range(self.n)]

    def summary(self) -> dict[str, int]:
        return {"loaded": self.n}

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        return {**self.__dict__, "decodes": None}  # a counter is shared by fork, never pickled

    def __getitem__(self, index: int) -> Sample:
        if self.decodes is not None:
            with self.decodes.get_lock():
                self.decodes.value += 1
        image = np.random.default_rng(index).integers(0, 256, (*self.shape, 3), dtype=np.uint8)
        masks = np.zeros((1, *self.shape), dtype=bool)
        masks[0, 4 : 10 + index, 5:20] = True
        return make_sample(f"item{index}", f"/fake/item{index}.png", image, masks, Pipeline(SIZE),
                           transform=self.transform)  # fmt: skip


def brighten_more_each_call():
    """An augmentation whose every draw differs, as a random one does."""
    calls = iter(range(1, 1000))

    def transform(image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.minimum(image.astype(int) + next(calls), 255).astype(np.uint8), masks

    return transform


def assert_same_sample(a: Sample, b: Sample) -> None:
    for field in ("image", "masks", "gt_masks"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert (a.name, a.image_path, a.input_size, a.original_size, a.categories) == (
        b.name, b.image_path, b.input_size, b.original_size, b.categories,
    )  # fmt: skip


ONE_SAMPLE = sample_bytes(CountingDataset()[0])


def test_second_access_is_served_from_memory_without_decoding_again():
    data = CountingDataset()
    memo = MemoDataset(data, budget=10 * ONE_SAMPLE)
    for _ in range(3):
        for i in range(len(memo)):
            memo[i]
    assert data.decodes.value == len(data)
    assert memo.cached == len(data)


def test_cached_samples_equal_the_uncached_dataset_on_every_access():
    memo = MemoDataset(CountingDataset(), budget=10 * ONE_SAMPLE)
    reference = CountingDataset()
    for _ in range(2):
        for i in range(len(memo)):
            assert_same_sample(memo[i], reference[i])


def test_items_beyond_the_budget_are_decoded_on_every_access():
    data = CountingDataset(n=4)
    memo = MemoDataset(data, budget=2 * ONE_SAMPLE + ONE_SAMPLE // 2)
    for _ in range(3):
        for i in range(len(memo)):
            memo[i]
    assert memo.cached == 2
    assert memo.nbytes <= memo.budget.limit
    assert data.decodes.value == 2 + 2 * 3  # items 0-1 once, items 2-3 on each of the 3 passes


def test_a_zero_budget_caches_nothing_and_still_serves_every_item():
    data = CountingDataset(n=3)
    memo = MemoDataset(data, budget=0)
    memo.fill()
    assert [memo[i].name for i in range(3)] == ["item0", "item1", "item2"]
    assert memo.cached == 0


def test_augmented_split_is_never_cached_and_each_access_draws_anew():
    data = CountingDataset(n=2)
    memo = MemoDataset(data, budget=10 * ONE_SAMPLE)
    memo.transform = brighten_more_each_call()  # set after wrapping, as the runner does
    first, second = memo[0], memo[0]
    assert not torch.equal(first.image, second.image)
    memo.fill()
    assert memo.cached == 0
    assert data.decodes.value == 2


def test_augmentation_switched_on_later_bypasses_samples_already_in_memory():
    data = CountingDataset(n=1)
    memo = MemoDataset(data, budget=10 * ONE_SAMPLE)
    plain = memo[0]
    data.transform = brighten_more_each_call()
    assert not torch.equal(memo[0].image, plain.image)


def test_editing_a_served_sample_in_place_leaves_the_memo_intact():
    memo = MemoDataset(CountingDataset(n=1), budget=10 * ONE_SAMPLE)
    served = memo[0]
    served.image.zero_()
    served.masks.zero_()
    served.gt_masks.zero_()
    served.categories.append("intruder")
    batch = collate([memo[0]])
    batch.gt_masks[0].zero_()  # collate passes gt masks through as views
    assert_same_sample(memo[0], CountingDataset(n=1)[0])


def test_fill_prepares_the_split_once_in_order_and_reads_then_hit():
    data = CountingDataset(n=4)
    memo = MemoDataset(data, budget=10 * ONE_SAMPLE)
    memo.fill()
    memo.fill()  # nothing left to prepare
    assert memo.cached == 4 and data.decodes.value == 4
    for i in range(4):
        memo[i]
    assert data.decodes.value == 4


def test_fill_stops_decoding_once_the_budget_is_full():
    data = CountingDataset(n=6)
    memo = MemoDataset(data, budget=2 * ONE_SAMPLE)
    memo.fill()
    assert memo.cached == 2
    assert data.decodes.value == 3  # the third did not fit; the rest were never read


def test_one_budget_is_shared_by_the_splits_filled_most_read_first():
    first, second = CountingDataset(n=3), CountingDataset(n=3)
    memos = memoize({"val": first, "train": second}, limit_bytes=4 * ONE_SAMPLE)
    assert (memos["val"].cached, memos["train"].cached) == (3, 1)
    assert memos["val"].budget is memos["train"].budget


def test_a_split_named_twice_is_wrapped_and_decoded_once():
    test = CountingDataset(n=2)
    memos = memoize({"test": test, "train": CountingDataset(n=2), "eval": test}, 10 * ONE_SAMPLE)
    assert memos["eval"] is memos["test"]
    assert test.decodes.value == 2


def test_memo_keeps_the_split_interface():
    data = CountingDataset(n=2)
    memo = MemoDataset(data, budget=0)
    assert memo.names == ["item0", "item1"] and memo.summary() == {"loaded": 2} and len(memo) == 2


def test_log_line_says_what_each_split_keeps_in_memory():
    train = CountingDataset(n=2)
    train.transform = brighten_more_each_call()
    memos = memoize({"val": CountingDataset(n=2), "train": train, "test": CountingDataset(n=3)},
                    limit_bytes=4 * ONE_SAMPLE)  # fmt: skip
    line = describe(memos)
    assert line.startswith("sample cache: val 2 of 2, train off (augmented), test 2 of 3 images")
    assert re.search(r"in memory \([\d.]+ MB of [\d.]+ MB\)$", line)
    assert "off" in describe(memoize({"test": CountingDataset(n=1)}, limit_bytes=0))


def test_a_memo_pickled_for_a_spawned_worker_travels_without_its_samples():
    memo = MemoDataset(CountingDataset(n=2), budget=10 * ONE_SAMPLE)
    memo.fill()
    copy = pickle.loads(pickle.dumps(memo))
    assert copy.cached == 0 and memo.cached == 2
    assert_same_sample(copy[1], memo[1])


def loader(dataset: Dataset[Sample], workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=2, collate_fn=collate, num_workers=workers,
                      persistent_workers=True, multiprocessing_context=WORKER_CONTEXT)  # fmt: skip


@pytest.mark.skipif(WORKER_CONTEXT != "fork", reason="workers share the memo by fork (Linux)")
def test_workers_read_the_filled_memo_and_never_decode_it_again():
    data = CountingDataset(n=6)
    memo = MemoDataset(data, budget=10 * ONE_SAMPLE)
    memo.fill(num_workers=2)  # decoded in parallel by temporary workers
    assert memo.cached == 6 and data.decodes.value == 6
    batches = loader(memo, workers=2)
    epochs = [[name for batch in batches for name in batch.names] for _ in range(2)]
    assert epochs == [[f"item{i}" for i in range(6)]] * 2
    assert data.decodes.value == 6


@pytest.mark.skipif(WORKER_CONTEXT != "fork", reason="workers share the memo by fork (Linux)")
def test_workers_decode_what_did_not_fit_every_epoch_without_growing_their_own_memo():
    data = CountingDataset(n=4)
    memo = MemoDataset(data, budget=2 * ONE_SAMPLE)
    memo.fill()
    decoded_by_fill = data.decodes.value  # 2 kept, 1 tried
    batches = loader(memo, workers=2)
    reference = [CountingDataset(n=4)[i] for i in range(4)]
    for _ in range(2):
        served = [s for batch in batches for s in zip(batch.names, batch.images, strict=True)]
        for (name, image), expected in zip(served, reference, strict=True):
            assert name == expected.name and torch.equal(image, expected.image)
    assert data.decodes.value == decoded_by_fill + 2 * 2  # items 2-3, in each of 2 epochs
