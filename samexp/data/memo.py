"""Prepared samples (decoded, resized, padded) kept in memory, so an un-augmented split is decoded
once per run instead of once per epoch and evaluation.

One copy lives in the main process, filled up front, rather than one memo per DataLoader worker:
a shuffled train split sends each image to a different worker every epoch, so per-worker memos
would hit rarely and hold the same image several times over. `fill()` decodes a split once (in
parallel when given workers) and the run's workers, started afterwards, are forked and read the
memo copy-on-write: no copy, no inter-process traffic. Workers never add to it (an addition would
live in that one worker). Under a spawn or forkserver start the memo travels without its samples,
as pickling them would copy the memo into every worker (or hold a file descriptor per tensor),
and workers simply decode; `WORKER_CONTEXT` asks for fork where it is the safe default (Linux).
"""

from __future__ import annotations

import dataclasses
import sys

from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm.auto import tqdm

from samexp.data.base import Sample

# DataLoader(multiprocessing_context=...) for runs with workers: fork shares the memo for free.
WORKER_CONTEXT = "fork" if sys.platform == "linux" else None


class ByteBudget:
    """Bytes that the memos of one run may fill, shared so that all splits stay within one limit."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"a byte budget cannot be negative, got {limit}")
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        return self.limit - self.used

    def take(self, nbytes: int) -> bool:
        """Reserve `nbytes` if they fit; a full budget stays full (no eviction, no thrashing)."""
        if nbytes > self.left:
            return False
        self.used += nbytes
        return True


def sample_bytes(sample: Sample) -> int:
    """What a sample holds in memory: its image and masks in SAM's frame and at full resolution."""
    return sum(t.nbytes for t in (sample.image, sample.masks, sample.gt_masks))


def _own_copy(sample: Sample) -> Sample:
    """A sample sharing nothing mutable with `sample`, so an in-place edit downstream cannot reach
    the memo. 0.3 ms for a 1024 px sample on an idle CPU core, 2-3 ms on a busy one, against
    30-60 ms to decode and resize it."""
    return dataclasses.replace(
        sample,
        image=sample.image.clone(),
        masks=sample.masks.clone(),
        gt_masks=sample.gt_masks.clone(),
        categories=list(sample.categories),
    )


def _as_is(sample: Sample) -> Sample:
    return sample  # module level: DataLoader workers must be able to pickle it


class MemoDataset(Dataset[Sample]):
    """A split whose prepared samples are kept by index until `budget` is full.

    Nothing is kept, or served from memory, while the wrapped split has a `transform`: augmentation
    must draw anew on every access. It is checked on each access, because the runner may set it
    after wrapping.
    """

    def __init__(self, dataset: Dataset[Sample], budget: ByteBudget | int) -> None:
        self.dataset = dataset
        self.budget = budget if isinstance(budget, ByteBudget) else ByteBudget(budget)
        self._samples: dict[int, Sample] = {}

    # the split interface (samexp.data.splits): names, summary(), a settable transform
    @property
    def names(self) -> list[str]:
        return self.dataset.names

    def summary(self) -> dict[str, int]:
        return self.dataset.summary()

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    @property
    def augmented(self) -> bool:
        return self.transform is not None

    @property
    def cached(self) -> int:
        """How many samples are in memory."""
        return len(self._samples)

    @property
    def nbytes(self) -> int:
        return sum(sample_bytes(s) for s in self._samples.values())

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        if self.augmented:
            return self.dataset[index]
        sample = self._samples.get(index)
        if sample is None:
            sample = self.dataset[index]
            if not self._keep(index, sample):
                return sample
        return _own_copy(sample)

    def _keep(self, index: int, sample: Sample) -> bool:
        if get_worker_info() is not None or not self.budget.take(sample_bytes(sample)):
            return False
        self._samples[index] = sample
        return True

    def fill(self, num_workers: int = 0) -> None:
        """Prepare the split now, in order, until the budget is full (a no-op when augmented).

        With workers, images are decoded in parallel by temporary worker processes.
        """
        missing = [i for i in range(len(self)) if i not in self._samples]
        if self.augmented or not missing or self.budget.left <= 0:
            return
        loader = DataLoader(self.dataset, batch_size=None, sampler=missing, collate_fn=_as_is,
                            num_workers=num_workers,
                            multiprocessing_context=WORKER_CONTEXT if num_workers else None)  # fmt: skip
        pairs = zip(missing, loader, strict=True)
        for index, sample in tqdm(pairs, total=len(missing), desc="preparing images", leave=False):
            # From a worker, every tensor arrives in shared memory holding a file descriptor of its
            # own; a private copy releases it, so a large memo cannot exhaust the process's limit.
            if not self._keep(index, _own_copy(sample) if num_workers else sample):
                break  # full: the rest stays on disk

    def __getstate__(self) -> dict:
        # pickled for a spawned worker: travel light (see the module docstring)
        return {**self.__dict__, "_samples": {}}


def memoize(
    splits: dict[str, Dataset[Sample]], limit_bytes: int, num_workers: int = 0
) -> dict[str, MemoDataset]:
    """Wrap and fill the splits in the order given, most-read first, within one shared budget.

    A dataset given under two names (the test split doubling as the eval split) is wrapped once.
    """
    budget = ByteBudget(limit_bytes)
    by_id: dict[int, MemoDataset] = {}
    memos: dict[str, MemoDataset] = {}
    for name, dataset in splits.items():
        memo = by_id.get(id(dataset))
        if memo is None:
            memo = by_id[id(dataset)] = MemoDataset(dataset, budget)
            memo.fill(num_workers)
        memos[name] = memo
    return memos


def describe(memos: dict[str, MemoDataset]) -> str:
    """One log line: what each split keeps in memory, e.g.
    'sample cache: val 2 of 2, train 6 of 6, test 2 of 2 images in memory (52 MB of 2048 MB)'."""
    if not memos:
        return "sample cache: no splits"
    budget = next(iter(memos.values())).budget
    if budget.limit == 0:
        return "sample cache off (trainer.sample_cache_gb=0): every epoch decodes its images"
    parts = [
        f"{name} off (augmented)" if memo.augmented else f"{name} {memo.cached} of {len(memo)}"
        for name, memo in memos.items()
    ]
    return (
        f"sample cache: {', '.join(parts)} images in memory "
        f"({budget.used / 2**20:.1f} MB of {budget.limit / 2**20:.1f} MB)"
    )
