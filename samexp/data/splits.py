"""The splits a run uses; every dataset format's factory returns one of these, holding datasets
that follow `samexp.data.views.SampleDataset` (a test split held out of train: `held_out`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch

from samexp.config.checks import AT_LEAST_1, Range, because
from samexp.config.errors import DatasetError
from samexp.data.held_out import check_disjoint, hold_out, relative_key
from samexp.data.views import SampleDataset, Subset, subset

log = logging.getLogger(__name__)

# `dataset.limit`, declared once for every format's factory: how many train images to keep
TrainLimit = Annotated[int | None, because(AT_LEAST_1, "train images kept")]
# `dataset.test_fraction`, likewise: the share of the images held out as the test split when the
# dataset has none (null: TEST_FRACTION then, with a warning)
TestFraction = Annotated[
    float | None, because(Range(0, 1, open_low=True, open_high=True), "share held out as test")
]
TEST_FRACTION = 0.2
TEST_FILES = "data/test_files.txt"  # the run artifact listing a run's test images
_LISTED = 5  # files a warning names


def _seeded_order(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def shown_root(root: Path) -> str:
    return str(root.resolve())


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
    # the dataset's folder: what image paths are listed relative to (`files`)
    root: Path | None = None
    # the share of train held out as the test split when the dataset had none (else None)
    held_out: float | None = None

    @classmethod
    def assemble(cls, name: str, root: str | Path, train: SampleDataset,
                 test: SampleDataset | None, val: SampleDataset | None = None,
                 limit: int | None = None, test_fraction: float | None = None) -> DatasetSplits:  # fmt: skip
        """Every format's last step: without a test split, hold one out of train by
        `test_fraction` (a stable hash of each file's path: `hold_out`); then refuse splits that
        share an image file."""
        root = Path(root)
        held_out = None
        if test is None:
            held_out = test_fraction
            if held_out is None:
                held_out = TEST_FRACTION
                log.warning(
                    "%s has no test split: holding out %.0f%% of its images as one, chosen by a "
                    "hash of each file's path (adding images never moves one between splits); "
                    "set dataset.test_fraction= to choose the share, or dataset.test_split= to "
                    "name a folder",
                    shown_root(root), 100 * held_out,
                )  # fmt: skip
            train, test = hold_out(train, held_out, root)
        elif test_fraction is not None:
            raise DatasetError(
                f"dataset.test_fraction={test_fraction} but {shown_root(root)} has a test split; "
                f"drop dataset.test_fraction, or set dataset.test_split=null to hold the test "
                f"images out of train instead"
            )
        check_disjoint({"train": train, "val": val, "test": test}, root)
        return cls(name=name, train=train, test=test, val=val, limit=limit, root=root,
                   held_out=held_out)  # fmt: skip

    @classmethod
    def from_splits(cls, name: str, load: Callable[[str], SampleDataset], train: str,
                    test: str | None, val: str | None = None, limit: int | None = None,
                    root: str | Path = ".", test_fraction: float | None = None) -> DatasetSplits:  # fmt: skip
        """For formats whose splits are sub-folders: one loader, called per named split (no
        test split: held out of train, see `assemble`)."""
        named = {"train": train, "val": val, "test": test}
        for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
            if named[a] is not None and named[a] == named[b]:
                raise DatasetError(
                    f"dataset.{a}_split and dataset.{b}_split are both '{named[a]}': a split must "
                    f"never hold an image of another; name different folders, or set "
                    f"dataset.test_split=null to hold out a test split from train"
                )
        return cls.assemble(name, root, load(train), load(test) if test is not None else None,
                            load(val) if val else None, limit, test_fraction)  # fmt: skip

    def with_test_files(self, files: list[str], source: str) -> DatasetSplits:
        """The test split an earlier run held out (its `data/test_files.txt`, from `source`)
        rather than the one `test_fraction` gives now: a model is scored on exactly the images it
        was not trained on, even if the share or the folder changed since. Only for a held-out
        test split; a dataset's own test folder is what it is."""
        if self.held_out is None or not isinstance(self.test, Subset):
            return self
        whole, root = self.test.dataset, (self.root or Path(".")).resolve()
        keys = [relative_key(Path(p).resolve(), root) for p in whole.image_paths]
        wanted = set(files)
        test = [i for i, key in enumerate(keys) if key in wanted]
        gone = sorted(wanted - set(keys))
        if not test:
            raise DatasetError(
                f"none of the {len(wanted)} test files of {source} is in {root} (e.g. "
                f"{', '.join(sorted(wanted)[:3])}); evaluate on the folder that run used"
            )
        if gone:
            log.warning("%d of the test files of %s are no longer in %s (%s); scoring the %d left",
                        len(gone), source, root, ", ".join(gone[:_LISTED]), len(test))  # fmt: skip
        log.info(
            "test split: the %d images %s held out (its data/test_files.txt)", len(test), source
        )
        rest = [i for i in range(len(keys)) if i not in set(test)]
        return dataclasses.replace(self, train=subset(whole, rest), test=subset(whole, test))

    def files(self, split: str) -> list[str]:
        """The image files of a split, relative to the dataset's folder (logged with a run)."""
        dataset = getattr(self, split)
        if dataset is None or not hasattr(dataset, "image_paths"):
            return []
        root = (self.root or Path(".")).resolve()
        return sorted(relative_key(Path(p).resolve(), root) for p in dataset.image_paths)

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
