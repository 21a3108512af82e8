"""How a run feeds its model: how many DataLoader workers, how large the sample cache
(samexp.data.memo), and the train, validation and test loaders built on them."""

from __future__ import annotations

import logging
import os
import signal

import torch
from torch.utils.data import DataLoader, DistributedSampler

from samexp.config.distributed import ONE_PROCESS, ShardBatches, World
from samexp.config.errors import STOP_SIGNALS
from samexp.data.base import collate
from samexp.data.memo import WORKER_CONTEXT, describe, memoize
from samexp.data.splits import DatasetSplits

log = logging.getLogger(__name__)


def num_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader workers: as configured, else none on CPU (they would take the model's cores)
    and half the cores, at most 8, on CUDA (decoding must keep up with the GPU)."""
    if requested is None:
        return min(8, (os.cpu_count() or 1) // 2) if device.type == "cuda" else 0
    return requested


def sample_cache_bytes(gb: float) -> int:
    """The sample cache's budget in bytes for `trainer.sample_cache_gb` (GiB; 0 turns it off)."""
    return int(gb * 2**30)


def ignore_stop_signals(worker_id: int) -> None:
    """Ctrl-C and a hung-up terminal's SIGHUP reach every process of the terminal's group, a
    scheduler's SIGTERM often every process of the job: only the main process decides to stop
    (after its step, with a checkpoint), so a worker must not die under it mid-epoch."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def loaders(
    splits: DatasetSplits,
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    workers: int,
    cache_bytes: int,
    world: World = ONE_PROCESS,
) -> tuple[DataLoader, DataLoader | None, DataLoader]:
    """train (shuffled, seeded, re-shuffled per epoch by `sampler.set_epoch`), the validation split
    (None without one), test split; un-augmented splits are decoded once into the sample cache,
    most-read first (val and train every epoch, test twice).

    `batch_size` is per process: under torchrun each rank takes every `world.size`-th image of
    an epoch's order (DistributedSampler), so a global batch is `batch_size × world.size`; the
    evaluated splits are shared out batch by batch (ShardBatches).
    """
    parts = {"val": splits.val} if splits.val is not None else {}
    data = memoize({**parts, "train": splits.train, "test": splits.test}, cache_bytes, workers)
    log.info(describe(data))
    common = {"collate_fn": collate, "num_workers": workers,
              "persistent_workers": workers > 0, "pin_memory": device.type == "cuda",
              "multiprocessing_context": WORKER_CONTEXT if workers else None,
              "worker_init_fn": ignore_stop_signals if workers else None}  # fmt: skip
    # the same order as any number of processes would draw: one process is a world of one
    order = DistributedSampler(data["train"], num_replicas=world.size, rank=world.rank,
                               shuffle=True, seed=seed)  # fmt: skip
    train = DataLoader(data["train"], batch_size=batch_size, sampler=order, **common)

    def evaluated(split: str) -> DataLoader:
        shard = ShardBatches(len(data[split]), batch_size, world)
        return DataLoader(data[split], batch_sampler=shard, **common)

    return train, evaluated("val") if "val" in data else None, evaluated("test")


def sharded(loader: DataLoader, world: World) -> DataLoader:
    """`loader`'s data in order, this rank's share of its batches (as an evaluated split is
    shared out): one pass in which every rank touches different images."""
    shard = ShardBatches(len(loader.dataset), loader.batch_size or 1, world)
    return DataLoader(loader.dataset, batch_sampler=shard, collate_fn=loader.collate_fn,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      multiprocessing_context=loader.multiprocessing_context,
                      worker_init_fn=loader.worker_init_fn)  # fmt: skip
