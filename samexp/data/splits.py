"""The splits a run uses; every dataset format's factory returns one of these."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from samexp.data.base import Sample


@dataclass
class DatasetSplits:
    name: str
    train: Dataset[Sample]
    test: Dataset[Sample]
    val: Dataset[Sample] | None = (
        None  # evaluated each epoch when given; otherwise the test split is
    )

    @property
    def eval_name(self) -> str:
        return "val" if self.val is not None else "test"

    @property
    def eval(self) -> Dataset[Sample]:
        return self.val if self.val is not None else self.test

    def summary(self) -> dict[str, int]:
        """Loaded/skipped counts per split, e.g. {'train/loaded': 8, 'train/skipped_empty_mask': 0}."""
        out: dict[str, int] = {}
        for split in ("train", "val", "test"):
            ds = getattr(self, split)
            if ds is not None and hasattr(ds, "summary"):
                out.update({f"{split}/{k}": v for k, v in ds.summary().items()})
        return out
