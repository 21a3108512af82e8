"""What a dataset format hands the runner (`SampleDataset`), and views of one: a wrapper that
passes everything through (`DatasetView`), and some of its items (`Subset`: a carved validation
split, a held-out test split, a limited train split)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch.utils.data import Dataset

from samexp.data.base import Sample


@runtime_checkable
class SampleDataset(Protocol):
    """What the runner needs of a dataset format, beyond indexing: names for per-image metrics and
    comparison images, counts of what was loaded and skipped for the run log, and a training
    augmentation it can set on the train split alone."""

    transform: Callable[[Any, Any], tuple[Any, Any]] | None

    @property
    def names(self) -> list[str]: ...  # one per item, unique within the split

    @property
    def image_paths(self) -> list[Path]: ...  # one per item: what a held-out test split hashes

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
    def image_paths(self) -> list[Path]:
        return self.dataset.image_paths

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

    @property
    def image_paths(self) -> list[Path]:
        paths = self.dataset.image_paths
        return [paths[i] for i in self.indices]

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
