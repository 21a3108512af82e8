"""Specification of the frozen-encoder embedding cache: keys, memory LRU, disk store, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from samexp.models.embedding_cache import EmbeddingCache, cache_key

SHAPE = (8, 4, 4)


def _embedding(i: int) -> torch.Tensor:
    """A deterministic, distinct tiny embedding per index (same in every process)."""
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randn(SHAPE, generator=g)


def _image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g)


def _keys(n: int) -> list[str]:
    return [f"{i:02x}" + "k" * 62 for i in range(n)]


def test_get_counts_hits_and_misses():
    cache = EmbeddingCache(None)
    assert cache.get("a" * 64) is None
    cache.put("a" * 64, _embedding(0))
    got = cache.get("a" * 64)
    assert torch.equal(got, _embedding(0))
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.stats()["hit_rate"] == pytest.approx(0.5)


def test_the_stats_of_several_ranks_add_up_to_one_jobs():
    first, second = EmbeddingCache(None), EmbeddingCache(None)
    first.put("a" * 64, _embedding(0))
    first.get("a" * 64)  # a hit
    second.get("a" * 64), second.get("b" * 64)  # two misses: another process's memory
    job = EmbeddingCache.total([first.stats(), second.stats()])
    assert (job["hits"], job["misses"], job["memory_items"]) == (1, 2, 1)
    assert job["hit_rate"] == pytest.approx(1 / 3)


def test_returned_tensor_is_a_detached_copy():
    cache = EmbeddingCache(None)
    cache.put("a" * 64, _embedding(0).requires_grad_())
    got = cache.get("a" * 64)
    assert not got.requires_grad
    got.zero_()  # a caller modifying its result must not corrupt the cache
    assert torch.equal(cache.get("a" * 64), _embedding(0))


def test_get_or_compute_computes_only_misses_in_key_order():
    cache = EmbeddingCache(None)
    keys = _keys(6)
    for i in (1, 4):
        cache.put(keys[i], _embedding(i))
    calls: list[list[int]] = []

    def compute(indices: list[int]) -> torch.Tensor:
        calls.append(list(indices))
        return torch.stack([_embedding(i) for i in indices])

    out = cache.get_or_compute(keys, compute)
    assert calls == [[0, 2, 3, 5]]
    assert out.shape == (6, *SHAPE)
    assert torch.equal(out, torch.stack([_embedding(i) for i in range(6)]))

    again = cache.get_or_compute(list(reversed(keys)), compute)
    assert calls == [[0, 2, 3, 5]]  # everything is a hit now
    assert torch.equal(again, torch.stack([_embedding(i) for i in reversed(range(6))]))
    assert (cache.hits, cache.misses) == (2 + 6, 4)


def test_get_or_compute_computes_a_repeated_missing_key_once():
    cache = EmbeddingCache(None)
    keys = _keys(2)
    calls: list[list[int]] = []

    def compute(indices: list[int]) -> torch.Tensor:
        calls.append(list(indices))
        return torch.stack([_embedding(int(keys[i][:2], 16)) for i in indices])

    out = cache.get_or_compute([keys[0], keys[1], keys[0]], compute)
    assert calls == [[0, 1]]
    assert torch.equal(out[2], _embedding(0))


def test_get_or_compute_rejects_a_wrong_batch_size():
    cache = EmbeddingCache(None)
    with pytest.raises(ValueError, match="2 indices"):
        cache.get_or_compute(_keys(2), lambda idx: torch.zeros(1, *SHAPE))


def test_cache_key_is_stable_and_changes_with_every_input():
    image = _image()
    base = cache_key("vit_b:abc", image, (1024, 1024), "none")
    assert base == cache_key("vit_b:abc", image.clone(), (1024, 1024), "none")
    assert len(base) == 64 and int(base, 16) >= 0

    one_byte = image.clone()
    one_byte[2, 15, 15] ^= 1
    variants = [
        cache_key("vit_b:abd", image, (1024, 1024), "none"),
        cache_key("vit_b:abc", one_byte, (1024, 1024), "none"),
        cache_key("vit_b:abc", image, (512, 1024), "none"),
        cache_key("vit_b:abc", image, (1024, 1024), "hflip"),
        cache_key("vit_b:abc", image, (1024, 1024), "none", extra="x"),
        cache_key("vit_b:abc", image.reshape(3, 8, 32), (1024, 1024), "none"),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_disk_store_persists_across_instances(tmp_path: Path):
    key = cache_key("w", _image(), (16, 16))
    EmbeddingCache(tmp_path).put(key, _embedding(3))
    assert (tmp_path / key[:2] / f"{key}.pt").is_file()

    fresh = EmbeddingCache(tmp_path)
    assert torch.equal(fresh.get(key), _embedding(3))
    assert fresh.stats()["disk_hits"] == 1


def test_memory_lru_drops_the_least_recently_used_item():
    cache = EmbeddingCache(None, max_memory_items=2)
    a, b, c = _keys(3)
    cache.put(a, _embedding(0))
    cache.put(b, _embedding(1))
    assert cache.get(a) is not None  # a is now more recent than b
    cache.put(c, _embedding(2))
    assert cache.stats()["memory_items"] == 2
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None


def test_memory_is_bounded_in_bytes_too_so_large_multi_level_features_cannot_exhaust_it():
    features = {"fpn0": torch.zeros(4, 8, 8), "image_embed": torch.zeros(4, 2, 2)}  # 1088 bytes
    cache = EmbeddingCache(None, max_memory_items=100, max_memory_bytes=2500)
    a, b, c = _keys(3)
    for key in (a, b, c):
        cache.put(key, features)
    assert cache.stats()["memory_items"] == 2  # a third would pass 2500 bytes: the oldest goes
    assert cache.get(a) is None and set(cache.get(c)) == {"fpn0", "image_embed"}
    too_big = EmbeddingCache(None, max_memory_bytes=1000)
    too_big.put(a, features)  # one entry over the whole bound is not kept at all
    assert too_big.stats()["memory_items"] == 0


def test_disk_bound_evicts_the_least_recently_used_files(tmp_path: Path):
    keys = _keys(5)
    file_size = None
    cache = EmbeddingCache(tmp_path, max_disk_bytes=1 << 40, max_memory_items=0)
    for t, key in enumerate(keys[:4]):
        cache.put(key, _embedding(t))
        os.utime(cache.path(key), (1_000_000 + t, 1_000_000 + t))  # explicit, distinct ages
        file_size = cache.path(key).stat().st_size
    assert cache.get(keys[0]) is not None  # a read refreshes keys[0]: keys[1] is now the oldest

    # Room for 4.5 files: the fifth put overflows, eviction goes down to 90% = 4.05 files -> 4 kept.
    cache.max_disk_bytes = int(4.5 * file_size)
    cache.put(keys[4], _embedding(4))
    remaining = {p.stem for p in tmp_path.glob("*/*.pt")}
    assert remaining == {keys[0], keys[2], keys[3], keys[4]}
    assert cache.stats()["evicted_files"] == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_file_is_a_miss_and_gets_rewritten(tmp_path: Path, damage: str):
    key = _keys(1)[0]
    EmbeddingCache(tmp_path).put(key, _embedding(0))
    path = EmbeddingCache(tmp_path).path(key)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a tensor file")

    cache = EmbeddingCache(tmp_path)
    out = cache.get_or_compute([key], lambda idx: torch.stack([_embedding(0)]))
    assert cache.misses == 1 and cache.hits == 0
    assert torch.equal(out[0], _embedding(0))
    assert torch.equal(EmbeddingCache(tmp_path).get(key), _embedding(0))


def test_fp16_storage_round_trips_within_half_precision(tmp_path: Path):
    key = _keys(1)[0]
    EmbeddingCache(tmp_path, dtype=torch.float16).put(key, _embedding(0))
    stored = torch.load(EmbeddingCache(tmp_path).path(key), weights_only=True)
    assert stored.dtype == torch.float16

    got = EmbeddingCache(tmp_path).get(key, dtype=torch.float32)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, _embedding(0), rtol=1e-3, atol=1e-3)


def _concurrent_worker(root: str, worker: int) -> None:
    # Memory off so every get goes to disk, racing the other worker's writes of the same files.
    cache = EmbeddingCache(root, max_memory_items=0)
    keys = _keys(20)
    order = range(20) if worker == 0 else reversed(range(20))
    for _ in range(3):
        for i in order:
            cache.put(keys[i], _embedding(i))
            got = cache.get(keys[i])
            if got is None or not torch.equal(got, _embedding(i)):
                raise AssertionError(f"worker {worker} read a wrong tensor for key {i}")


@pytest.mark.slow  # two spawned interpreters importing torch: seconds
def test_two_processes_writing_the_same_keys_leave_only_whole_files(tmp_path: Path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_concurrent_worker, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]

    cache = EmbeddingCache(tmp_path, max_memory_items=0)
    for i, key in enumerate(_keys(20)):
        assert torch.equal(torch.load(cache.path(key), weights_only=True), _embedding(i))
    assert not list(tmp_path.glob("*/*.tmp"))
