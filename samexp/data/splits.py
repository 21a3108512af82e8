"""The splits a run uses; every dataset format's factory returns one of these, holding datasets
that follow `SampleDataset`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset

from samexp.data.base import Sample
from samexp.errors import DatasetError

log = logging.getLogger(__name__)


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


class Subset(Dataset[Sample]):
    """Some items of a dataset, with a transform of their own (the dataset is shallow-copied, so
    augmenting the train part never augments a validation part carved from the same files)."""

    def __init__(self, dataset: SampleDataset, indices: list[int]) -> None:
        self.dataset = copy.copy(dataset)
        self.indices = list(indices)

    @property
    def names(self) -> list[str]:
        names = self.dataset.names
        return [names[i] for i in self.indices]

    @property
    def transform(self):
        return self.dataset.transform

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    def summary(self) -> dict[str, int]:
        return {"loaded": len(self.indices)}

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[self.indices[index]]


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

    @classmethod
    def from_splits(cls, name: str, load: Callable[[str], SampleDataset], train: str, test: str,
                    val: str | None = None) -> DatasetSplits:  # fmt: skip
        """For formats whose splits are sub-folders: one loader, called per named split."""
        return cls(name=name, train=load(train), test=load(test), val=load(val) if val else None)

    def carve_val(self, fraction: float, seed: int) -> DatasetSplits:
        """Hold out a seeded `fraction` of train as the validation split, unless the dataset has one."""
        if self.val is not None or fraction <= 0:
            return self
        n = len(self.train)
        k = max(1, round(n * fraction))
        if n - k < 1:
            log.warning("train split has %d images: too few to carve a validation split from", n)
            return self
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        return DatasetSplits(
            self.name,
            Subset(self.train, sorted(order[k:])),
            self.test,
            Subset(self.train, sorted(order[:k])),
        )

    def summary(self) -> dict[str, int]:
        """Loaded/skipped counts per split, e.g. {'train/loaded': 8, 'train/skipped_empty_mask': 0}."""
        out: dict[str, int] = {}
        for split in ("train", "val", "test"):
            ds = getattr(self, split)
            if ds is not None and hasattr(ds, "summary"):
                out.update({f"{split}/{k}": v for k, v in ds.summary().items()})
        return out
