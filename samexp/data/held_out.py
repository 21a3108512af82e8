"""A test split held out of data that has none, by a hash of each image's path (so adding images
never moves one between splits), and the check that no two splits share an image file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from samexp.config.errors import DatasetError, first_few
from samexp.data.views import SampleDataset, Subset, subset

_LISTED = 5  # files an overlap message names before "and N more"


def stable_share(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone: a file's place in a held-out split depends on its
    own path, never on which other files exist, so adding images never moves old ones."""
    return (
        int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()[:8], "big")
        / 2**64
    )


def relative_key(path: Path, root: Path) -> str:
    """The path a file is known by in a dataset: relative to the root, '/'-separated, so the
    split is the same on every machine and wherever the dataset folder is mounted."""
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).as_posix()


def hold_out(dataset: SampleDataset, fraction: float, root: Path) -> tuple[Subset, Subset]:
    """(train, test): the images whose `stable_share` of their relative path is under `fraction`
    are the test split; at least one image on each side."""
    shares = [stable_share(relative_key(p, root)) for p in dataset.image_paths]
    n = len(shares)
    if n < 2:
        raise DatasetError(
            f"{root}: {n} image(s) in all, too few to hold out a test split from; add images or "
            f"give the dataset a test split (dataset.test_split=<folder>)"
        )
    test = [i for i, share in enumerate(shares) if share < fraction]
    if not test:  # a small dataset: the image nearest to the cut, so there is one
        test = [min(range(n), key=shares.__getitem__)]
    if len(test) == n:
        test.remove(max(test, key=shares.__getitem__))
    chosen = set(test)
    return subset(dataset, [i for i in range(n) if i not in chosen]), subset(dataset, test)


def check_disjoint(parts: dict[str, SampleDataset | None], root: Path) -> None:
    """Refuse splits that share an image file: a test score on trained-on images measures memory."""
    seen: dict[Path, str] = {}
    for split, dataset in parts.items():
        if dataset is None:
            continue
        shared = []
        for path in getattr(dataset, "image_paths", []):
            resolved = Path(path).resolve()
            if resolved in seen:
                shared.append((seen[resolved], relative_key(resolved, root.resolve())))
            else:
                seen[resolved] = split
        if shared:
            other = shared[0][0]
            names = first_few([key for _, key in shared], _LISTED)
            raise DatasetError(
                f"the {other} and {split} splits share {len(shared)} image file(s): {names}; "
                f"a split must never hold an image of another: point dataset.{other}_split and "
                f"dataset.{split}_split at different folders, or set dataset.test_split=null to "
                f"hold out a test split from train"
            )
