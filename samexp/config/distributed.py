"""One process or many: torchrun's environment read once, and the few collectives samexp needs.

Under `torchrun --nproc_per_node=N -m samexp ...` every process runs the same pipeline on its
share of the data; rank 0 alone talks to MLflow and writes files. Outside torchrun every helper
here is the identity, so single-process code pays nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from samexp.config.errors import SamexpError

log = logging.getLogger(__name__)

# how long a rank waits in a collective before giving up: a dead peer usually breaks the
# connection at once; this bounds the cases where it does not
TIMEOUT = datetime.timedelta(minutes=10)
STORE_TIMEOUT = datetime.timedelta(seconds=10)
FAILURES = "samexp/failures"  # in torchrun's store: how many ranks said they failed
# what gloo and NCCL say when the other end of a connection is gone
PEER_GONE = re.compile(r"connection (reset|closed) by peer|broken pipe|NCCL.*remote", re.IGNORECASE)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    per_node: int = 1  # processes on each node (torchrun's --nproc_per_node)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


ONE_PROCESS = World()


def world_from_env() -> World:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return ONE_PROCESS
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))  # fmt: skip


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group (nccl on CUDA, gloo on CPU); one GPU per process, by LOCAL_RANK."""
    if not world.distributed:
        return device
    if device.type == "mps":
        raise SamexpError(
            "torchrun with trainer.device=mps: a Mac has one Apple GPU, which one process uses; "
            "run python -m samexp without torchrun"
        )
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
    return device


def stop() -> None:
    """Leave the process group before the interpreter exits. Left to exit, gloo's threads can
    meet C++ teardown still running, and a run that finished aborts ("terminate called without
    an active exception", SIGABRT) and fails its torchrun job. PyTorch's documented shutdown."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to leave
            log.debug("leaving the process group failed", exc_info=True)


def first_to_fail(world: World) -> bool:
    """Whether this rank is the job's first to fail, and so the one to say why.

    A failure on one rank breaks its peers' collectives a moment later, each with its own
    "connection closed" error that hides the cause. torchrun's store, hosted by its agent so it
    outlives the ranks, counts failures: the first rank to arrive reports. Before the process
    group exists every rank meets the same config or file, and rank 0 reports.
    """
    if not world.distributed or not dist.is_initialized():
        return world.is_main
    count = _failures(add=1)
    return count is None or count == 1  # the store went with its host: better said twice


def peer_lost(error: BaseException, world: World) -> bool:
    """Whether `error` is this rank's side of a peer that vanished without a word.

    A rank that fails on its own counts itself (first_to_fail) before it exits and breaks the
    connections, so a broken connection while no rank has counted is a peer killed (SIGKILL,
    the OOM killer) or a node lost: the run was interrupted, not broken, and resumes from its
    last checkpoint. This rank's own bug breaks no connection, so it stays a failure.
    """
    if not world.distributed or not dist.is_initialized() or not PEER_GONE.search(str(error)):
        return False
    return not _failures(add=0)  # None (the store is gone too: so is the job): lost


def _failures(add: int) -> int | None:
    """The failures counted in torchrun's store after adding `add`; None if it cannot be read."""
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(STORE_TIMEOUT)
        return store.add(FAILURES, add)
    except Exception:
        return None


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's `value` on every rank (a run id, a folder, a decision)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, world: World) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def barrier(world: World) -> None:
    """Every rank waits here until all have arrived (files one rank wrote are there for all)."""
    if world.distributed:
        dist.barrier()


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when it is true on one (a stop request, a non-finite loss)."""
    if not world.distributed:
        return flag
    device = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    )
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


class ShardBatches(torch.utils.data.Sampler):
    """The batches of an unshuffled split, every `size`-th from `rank`: each rank evaluates its
    share, batch by batch as one process would, so gathered results equal the single-process
    ones. `numbers` are the global batch numbers, in the order this rank yields them."""

    def __init__(self, length: int, batch_size: int, world: World) -> None:
        batches = [
            list(range(i, min(i + batch_size, length))) for i in range(0, length, batch_size)
        ]
        self.numbers = list(range(world.rank, len(batches), world.size))
        self.batches = [batches[n] for n in self.numbers]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)
