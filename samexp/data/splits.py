"""The splits a run uses; every dataset format's factory returns one of these, holding datasets
that follow `SampleDataset`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset

from samexp.checks import AT_LEAST_1, because
from samexp.data.base import Sample
from samexp.errors import DatasetError

log = logging.getLogger(__name__)

# `dataset.limit`, declared once for every format's factory: how many train images to keep
TrainLimit = Annotated[int | None, because(AT_LEAST_1, "train images kept")]


@runtime_checkable
class SampleDataset(Protocol):
    """What the runner needs of a dataset format, beyond indexing: names for per-image metrics and
    comparison images, counts of what was loaded and skipped for the run log, and a training
    augmentation it can set on the train split alone."""

    transform: Callable[[Any, Any], tuple[Any, Any]] | None

    @property
    def names(self) -> list[str]: ...  # one per item, unique within the split

    def summary(self) -> dict[str, int]: ...  # e.g. {"loaded": 8, "skipped_empty_mask": 0}

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


class DatasetView(Dataset[Sample]):
    """A dataset seen through a wrapper: everything is the wrapped dataset's unless overridden
    (its transform too, so augmentation set on the view reaches the samples)."""

    def __init__(self, dataset: SampleDataset) -> None:
        self.dataset = dataset

    @property
    def names(self) -> list[str]:
        return self.dataset.names

    @property
    def class_names(self) -> list[str] | None:
        return getattr(self.dataset, "class_names", None)

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    def summary(self) -> dict[str, int]:
        return self.dataset.summary()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[index]


class Subset(DatasetView):
    """Some items of a dataset, with a transform of their own (the dataset is shallow-copied, so
    augmenting the train part never augments a validation part carved from the same files).
    A format that counts instances (`instance_summary(indices)`) has them counted for the part."""

    def __init__(self, dataset: SampleDataset, indices: list[int]) -> None:
        super().__init__(copy.copy(dataset))
        self.indices = list(indices)

    @property
    def names(self) -> list[str]:
        names = self.dataset.names
        return [names[i] for i in self.indices]

    def summary(self) -> dict[str, int]:
        counts = getattr(self.dataset, "instance_summary", None)
        return {"loaded": len(self.indices), **(counts(self.indices) if counts else {})}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[index]]


def subset(dataset: SampleDataset, indices: list[int]) -> Subset:
    """`indices` of `dataset`; a part of a part indexes the whole, so subsets never nest."""
    if isinstance(dataset, Subset):
        return Subset(dataset.dataset, [dataset.indices[i] for i in indices])
    return Subset(dataset, indices)


def _seeded_order(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def dataset_name(name: str | None, root: str | Path) -> str:
    """What runs are named after: `dataset.name`, else the root folder's name, so `dataset=rings
    dataset.root=/data/bottles` is not reported as rings."""
    return name or Path(root).resolve().name


def require_dataset_root(root: str | Path) -> Path:
    """Every format's first check, worded for the usual cause: the data root is not set."""
    path = Path(root)
    if not path.is_dir():
        raise DatasetError(
            f"dataset root {path.resolve()} does not exist; set SAMEXP_DATA to the folder "
            f"holding your datasets (e.g. SAMEXP_DATA=../shared/datasets), or data_root=/path on the "
            f"command line, or dataset.root=/path/to/this/dataset"
        )
    return path


@dataclass
class DatasetSplits:
    name: str
    train: SampleDataset
    test: SampleDataset
    # evaluated each epoch to choose the model; without it nothing is (never the test split)
    val: SampleDataset | None = None
    # `dataset.limit`: train images kept by `carve_val`, after it carves (None: all of them)
    limit: int | None = None

    @classmethod
    def from_splits(cls, name: str, load: Callable[[str], SampleDataset], train: str, test: str,
                    val: str | None = None, limit: int | None = None) -> DatasetSplits:  # fmt: skip
        """For formats whose splits are sub-folders: one loader, called per named split."""
        val_split = load(val) if val else None
        return cls(name=name, train=load(train), test=load(test), val=val_split, limit=limit)

    def carve_val(self, fraction: float, seed: int) -> DatasetSplits:
        """Hold out a seeded `fraction` of train as the validation split, unless the dataset has
        one; then keep a seeded `limit` of the rest for training (validation and test untouched).

        Carved before limiting, so every limit of one seed is validated on the same images (and
        limit=1 still has a validation split), and the limited parts of one seed are nested
        (limit=4 is within limit=8): a curve over limits measures adding labels, not luck.
        """
        return self._carved(fraction, seed)._limited(seed)

    def _carved(self, fraction: float, seed: int) -> DatasetSplits:
        if self.val is not None or fraction <= 0:
            return self
        n = len(self.train)
        k = max(1, round(n * fraction))
        if n - k < 1:
            log.warning("train split has %d images: too few to carve a validation split from", n)
            return self
        order = _seeded_order(n, seed)
        return dataclasses.replace(
            self,
            train=subset(self.train, sorted(order[k:])),
            val=subset(self.train, sorted(order[:k])),
        )

    def _limited(self, seed: int) -> DatasetSplits:
        if self.limit is None:
            return self
        n = len(self.train)
        if self.limit >= n:
            if self.limit > n:
                log.warning(
                    "dataset.limit=%d is more than the %d train images of %s; training on all %d",
                    self.limit, n, self.name, n,
                )  # fmt: skip
            return self
        log.info(
            "dataset.limit=%d: training on %d of the %d train images of %s (seed %d); "
            "validation and test splits untouched",
            self.limit, self.limit, n, self.name, seed,
        )  # fmt: skip
        keep = sorted(_seeded_order(n, seed)[: self.limit])
        limited = dataclasses.replace(self, train=subset(self.train, keep))
        before, after = self.train.summary(), limited.train.summary()
        lost = [k.removeprefix("instances/") for k, v in after.items()
                if k.startswith("instances/") and v == 0 and before.get(k)]  # fmt: skip
        if lost:
            log.warning(
                "dataset.limit=%d: no train image kept holds %s (still evaluated, never trained "
                "on); another seed or a larger limit may keep one",
                self.limit, ", ".join(lost),
            )  # fmt: skip
        return limited

    def summary(self) -> dict[str, int]:
        """Loaded/skipped counts per split, e.g. {'train/loaded': 8, 'train/skipped_empty_mask': 0}."""
        out: dict[str, int] = {}
        for split in ("train", "val", "test"):
            ds = getattr(self, split)
            if ds is not None and hasattr(ds, "summary"):
                out.update({f"{split}/{k}": v for k, v in ds.summary().items()})
        return out
