"""Reuse frozen-encoder image embeddings across epochs and across the trials of a sweep.

When SAM's image encoder is frozen its output depends only on (weights, image, input size,
transform), so it is computed once, keyed by a hash of those, and kept in a small in-memory LRU
and, optionally, in a content-addressed folder several processes can share. An entry is a tensor
or a family's features (a dict of tensors: SAM 2 keeps three levels), stored whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import torch

from samexp.config.atomic import atomic_path
from samexp.config.checks import NON_NEGATIVE, because
from samexp.config.options import option

log = logging.getLogger(__name__)

_GIB = 1 << 30
# the defaults, in the config's units; memory is bounded in entries and in bytes: a SAM entry is
# 4 MiB (256×64×64 fp32), a SAM 2.1 one 84 MiB (its three levels), so 256 entries of the latter
# would be 21 GiB
DISK_GB, MEMORY_ITEMS, MEMORY_GB = 10.0, 256, 2.0
_EVICT_TO = 0.9  # evict below 90% of the bound so the next few puts do not trigger a scan each
_SUFFIX = ".pt"

# what an entry holds: one tensor, or every feature level of an image (`models.family.Features`)
Entry = torch.Tensor | dict[str, torch.Tensor]


def _each(entry: Entry, fn: Callable[[torch.Tensor], torch.Tensor]) -> Entry:
    return {k: fn(v) for k, v in entry.items()} if isinstance(entry, dict) else fn(entry)


def _rows(batch: Entry) -> int:
    return len(next(iter(batch.values()))) if isinstance(batch, dict) else batch.shape[0]


def _row(batch: Entry, i: int) -> Entry:
    return _each(batch, lambda t: t[i])


def _bytes(entry: Entry) -> int:
    tensors = entry.values() if isinstance(entry, dict) else [entry]
    return sum(t.numel() * t.element_size() for t in tensors)


def _stack(rows: list[Entry]) -> Entry:
    if isinstance(rows[0], dict):
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    return torch.stack(rows)


def cache_key(
    weights_id: str,
    image: torch.Tensor,
    input_size: tuple[int, int],
    transform_id: str = "none",
    extra: str = "",
) -> str:
    """SHA-256 hex over everything the encoder output depends on, the image bytes included.

    `image` is the padded model input (uint8 3xSxS); its dtype and shape are hashed as well so two
    tensors with the same bytes but a different layout never share a key.
    """
    h = hashlib.sha256()
    header = [
        weights_id,
        f"{int(input_size[0])}x{int(input_size[1])}",
        transform_id,
        extra,
        str(image.dtype),
        "x".join(str(d) for d in image.shape),
    ]
    for part in header:
        # Length-prefixed, so ("ab", "c") and ("a", "bc") cannot collide.
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    flat = image.detach().to("cpu").contiguous().reshape(-1)
    h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Memory LRU in front of an optional on-disk store of embeddings, one file per key.

    Disk writes go to a unique temporary file and are published with `os.replace`, so concurrent
    writers of the same key never leave a torn file; an unreadable file counts as a miss and is
    removed. `dtype` (e.g. torch.float16) sets the storage dtype; None keeps the tensor's own.
    """

    def __init__(
        self,
        root: str | Path | None,
        max_disk_bytes: int = int(DISK_GB * _GIB),
        max_memory_items: int = MEMORY_ITEMS,
        dtype: torch.dtype | None = None,
        max_memory_bytes: int = int(MEMORY_GB * _GIB),
    ) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self.max_disk_bytes = int(max_disk_bytes)
        self.max_memory_items = int(max_memory_items)
        self.max_memory_bytes = int(max_memory_bytes)
        self._memory_bytes = 0
        self.dtype = dtype
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self.evicted_files = 0

    # ---- public API -------------------------------------------------------------------------

    def get(
        self,
        key: str,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Entry | None:
        """The cached entry (a detached copy on `device`, default CPU), or None on a miss."""
        stored = self._lookup(key)
        if stored is None:
            self.misses += 1
            return None
        self.hits += 1
        return self._deliver(stored, device, dtype)

    def put(self, key: str, tensor: Entry) -> None:
        """Store `tensor` under `key` (in memory, and on disk when the cache has a root)."""
        self._store(key, tensor)

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], Entry],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Entry:
        """Stacked B x C x h x w embeddings (or features, level by level) in key order;
        `compute(indices)` runs once for the misses.

        `compute` receives positions into `keys` (one per distinct missing key) and returns their
        embeddings stacked in that order. Every row is returned as stored, so a result does not
        depend on whether it was a hit (which matters with fp16 storage).
        """
        rows: list[Entry | None] = [None] * len(keys)
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in missing:  # a repeat of a key already missed in this batch: compute it once
                missing[key].append(i)
                continue
            stored = self._lookup(key)
            if stored is None:
                self.misses += 1
                missing[key] = [i]
            else:
                self.hits += 1
                rows[i] = stored
        if missing:
            first = [positions[0] for positions in missing.values()]
            computed = compute(first)
            if _rows(computed) != len(first):
                raise ValueError(
                    f"compute returned {_rows(computed)} embeddings for {len(first)} indices"
                )
            for j, (key, positions) in enumerate(missing.items()):
                stored = self._store(key, _row(computed, j))
                for i in positions:
                    rows[i] = stored
        return _stack([self._deliver(r, device, dtype) for r in rows])  # type: ignore[arg-type]

    def stats(self) -> dict[str, float]:
        total = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "disk_hits": self.disk_hits,
            "hit_rate": self.hits / total if total else 0.0,
            "memory_items": len(self._memory),
            "evicted_files": self.evicted_files,
        }

    @staticmethod
    def total(parts: Sequence[dict[str, float]]) -> dict[str, float]:
        """The `stats()` of several processes (torchrun's ranks) as those of one job."""
        summed = {k: sum(p[k] for p in parts) for k in parts[0] if k != "hit_rate"}
        lookups = summed["hits"] + summed["misses"]
        return {**summed, "hit_rate": summed["hits"] / lookups if lookups else 0.0}

    def path(self, key: str) -> Path:
        """Where `key` lives on disk (content-addressed, fanned out by its first two hex digits)."""
        if self.root is None:
            raise ValueError("this EmbeddingCache has no disk root")
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # ---- internals --------------------------------------------------------------------------

    @staticmethod
    def _deliver(
        stored: Entry, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> Entry:
        # copy=True: the caller may modify what it gets without corrupting the cache.
        return _each(stored, lambda t: t.to(device=device or "cpu", dtype=dtype or t.dtype,
                                            copy=True))  # fmt: skip

    def _lookup(self, key: str) -> Entry | None:
        stored = self._memory.get(key)
        if stored is not None:
            self._memory.move_to_end(key)
            return stored
        if self.root is None:
            return None
        stored = self._read(self.path(key))
        if stored is not None:
            self.disk_hits += 1
            self._remember(key, stored)
        return stored

    def _store(self, key: str, tensor: Entry) -> Entry:
        # own storage: never a view of a bigger batch
        stored = _each(tensor, lambda t: t.detach().to(device="cpu", dtype=self.dtype or t.dtype)
                       .contiguous().clone())  # fmt: skip
        self._remember(key, stored)
        if self.root is not None:
            self._write(self.path(key), stored)
            self._enforce_disk_bound()
        return stored

    def _remember(self, key: str, stored: Entry) -> None:
        if self.max_memory_items <= 0 or _bytes(stored) > self.max_memory_bytes:
            return
        if key in self._memory:
            self._memory_bytes -= _bytes(self._memory[key])
        self._memory[key] = stored
        self._memory_bytes += _bytes(stored)
        self._memory.move_to_end(key)
        while (len(self._memory) > self.max_memory_items
               or self._memory_bytes > self.max_memory_bytes):  # fmt: skip
            _, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= _bytes(dropped)

    @staticmethod
    def _read(path: Path) -> Entry | None:
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if not _is_entry(stored):
                raise TypeError(
                    f"expected a tensor or a dict of them, found {type(stored).__name__}"
                )
        except FileNotFoundError:
            return None
        except Exception as err:  # truncated or corrupt: drop it so the next put rewrites it
            log.warning("discarding unreadable cached embedding %s (%s)", path, err)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # mtime is the LRU clock for disk eviction
        except FileNotFoundError:
            pass
        return stored

    @staticmethod
    def _write(path: Path, stored: Entry) -> None:
        with atomic_path(path) as tmp:
            torch.save(stored, tmp)

    def _enforce_disk_bound(self) -> None:
        # Scans the folder after every put: other processes write too, so a local running total
        # would undercount; a scan of a few thousand stats is cheap next to one encoder pass.
        files: list[tuple[float, int, Path]] = []
        total = 0
        assert self.root is not None
        for entry in self.root.glob(f"*/*{_SUFFIX}"):
            try:
                st = entry.stat()
            except FileNotFoundError:  # evicted or replaced by another process meanwhile
                continue
            files.append((st.st_mtime, st.st_size, entry))
            total += st.st_size
        if total <= self.max_disk_bytes:
            return
        target = _EVICT_TO * self.max_disk_bytes
        for _, size, entry in sorted(files, key=lambda f: f[0]):
            if total <= target:
                break
            try:
                entry.unlink()
                self.evicted_files += 1
            except FileNotFoundError:
                pass
            total -= size


def _is_entry(value: object) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
        )
    return isinstance(value, torch.Tensor)


@option("cache", "embeddings")
def embedding_cache(
    enabled: bool = True,
    dir: str | None = None,  # default: <$SAMEXP_CACHE or ~/.cache/samexp>/embeddings
    max_disk_gb: Annotated[float, NON_NEGATIVE] = DISK_GB,
    memory_items: Annotated[int, because(NON_NEGATIVE, "embeddings kept in memory")] = MEMORY_ITEMS,
    memory_gb: Annotated[float, NON_NEGATIVE] = MEMORY_GB,  # and at most this much memory
) -> EmbeddingCache | None:
    """The cache frozen-encoder runs (adapter=decoder, decoder-only LoRA) reuse image embeddings
    from across epochs, runs and sweep trials; None when turned off. The runner asks for it only
    when nothing changes the embeddings (the encoder is frozen, no augmentation)."""
    if not enabled:
        return None
    from samexp.models.checkpoints import default_cache_dir

    root = dir if dir is not None else default_cache_dir() / "embeddings"
    return EmbeddingCache(root, int(max_disk_gb * _GIB), memory_items,
                          max_memory_bytes=int(memory_gb * _GIB))  # fmt: skip
