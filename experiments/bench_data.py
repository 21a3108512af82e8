"""Data loading speed: seconds per epoch of iterating the DataLoader, naive vs the sample cache.

    python experiments/bench_data.py                  # the rings packshots at 1024 px, else synthetic
    python experiments/bench_data.py --root DIR       # any folder dataset (its train and test splits)
    python experiments/bench_data.py --quick          # a few small synthetic images (the test's run)

naive: every epoch decodes and resizes every image (no cache, in the main process).
ours:  samexp.data.memo as the runner uses it: the first epoch includes `fill()`, later ones read
       memory (plus a private copy per sample, so the model can never edit the cache).
The loader keeps the model fed while its images/s exceed the model's: on a 2-core CPU a training
step of the decoder on cached embeddings consumes about 6 images/s and a vit_b LoRA step about
0.04 images/s; a GPU consumes one to two orders of magnitude more, which is where workers and the
cache matter.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from samexp.config.schema import TrainerConfig
from samexp.data.base import Sample, collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.data.memo import WORKER_CONTEXT, MemoDataset

BATCH = 2  # the trainer's default batch size


def _default_root() -> Path:
    data = os.environ.get("SAMEXP_DATA", Path(__file__).resolve().parents[2] / "shared/datasets")
    return Path(data) / "rings"


def write_photos(root: Path, count: int, size: tuple[int, int]) -> Path:
    """JPEG 'photos' (noise with a bright disc) and PNG masks: decoding costs what a real one does."""
    rng = np.random.default_rng(0)
    h, w = size
    for split in ("train", "test"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count // 2):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), dtype=np.uint8)
            cv2.circle(mask, (w // 2, h // 2), min(h, w) // 3, 255, -1)
            image[mask > 0] = (230, 200, 90)
            cv2.imwrite(str(root / split / "images" / f"photo{i}.jpg"), image)
            cv2.imwrite(str(root / split / "masks" / f"photo{i}.png"), mask)
    return root


def epochs_of(dataset: Dataset[Sample], epochs: int, workers: int, fill: bool) -> list[float]:
    """Seconds of each pass over the DataLoader; with `fill`, the cache fills in the first."""
    loader = DataLoader(dataset, batch_size=BATCH, collate_fn=collate, num_workers=workers,
                        persistent_workers=workers > 0,
                        multiprocessing_context=WORKER_CONTEXT if workers else None)  # fmt: skip
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        if fill and epoch == 0:
            dataset.fill(workers)
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, help="folder dataset (default: $SAMEXP_DATA/rings)")
    parser.add_argument("--img-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for ours")
    parser.add_argument("--quick", action="store_true", help="4 small synthetic images, 2 epochs")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        root, args.img_size, args.epochs = write_photos(Path(tmp.name), 4, (120, 160)), 128, 2
    else:
        root = args.root or _default_root()
        if not (root / "train").is_dir():
            root = write_photos(Path(tmp.name), 10, (1080, 1440))
    dataset = ConcatDataset(
        [FolderDataset(str(root), split, Pipeline(args.img_size)) for split in ("train", "test")]
    )
    budget = int(TrainerConfig.sample_cache_gb * 2**30)
    memo = MemoDataset(dataset, budget)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"{root}: {len(dataset)} images at {args.img_size} px, batch {BATCH}")  # fmt: skip
    header = f"{'loader':<8}{'workers':>8}{'first epoch':>13}{'s/epoch after':>15}{'images/s':>10}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    naive_per_epoch = None
    for name, data, workers, fill in (
        ("naive", dataset, 0, False),
        ("ours", memo, args.workers, True),
    ):
        times = epochs_of(data, args.epochs, workers, fill)
        per_epoch = sum(times[1:]) / len(times[1:])
        naive_per_epoch = naive_per_epoch or per_epoch
        print(f"{name:<8}{workers:>8}{times[0]:>12.3f}s{per_epoch:>14.4f}s"
              f"{len(dataset) / per_epoch:>10.1f}{naive_per_epoch / per_epoch:>9.1f}x", flush=True)  # fmt: skip
    print(f"cache: {memo.cached} of {len(memo)} images, {memo.nbytes / 2**20:.1f} MB "
          f"of {budget / 2**30:.1f} GB")  # fmt: skip
    tmp.cleanup()


if __name__ == "__main__":
    main()
