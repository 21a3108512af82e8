"""Specification of how SAM checkpoints are found, fetched, verified and cached.

Nothing here reaches the internet: the registry entry is swapped for a 1 KB fake file and
downloads come from a throwaway HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from samexp.config.errors import CheckpointError
from samexp.models import checkpoints
from samexp.models.checkpoints import (
    CHECKPOINTS,
    CheckpointSpec,
    default_cache_dir,
    in_cache,
    load_state_dict,
    resolve_checkpoint,
)

ARCH = "vit_b"
FAKE_BYTES = bytes(range(256)) * 4  # 1 KB stands in for 375 MB of weights
FAKE_SHA = hashlib.sha256(FAKE_BYTES).hexdigest()


def _closed_port_url() -> str:
    """A URL on a port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache, no inherited mirror/offline settings, and no internet."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAMEXP_CACHE", str(cache))
    for name in ("SAMEXP_CHECKPOINT_MIRROR", "SAMEXP_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)

    real_urlopen = urllib.request.urlopen

    def local_only_urlopen(url: str, *args: object, **kwargs: object) -> object:
        host = urllib.parse.urlsplit(url).hostname
        assert host == "127.0.0.1", f"test tried to reach the network: {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only_urlopen)
    return cache


@pytest.fixture
def cache(isolated: Path) -> Path:
    return isolated


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> CheckpointSpec:
    """The vit_b entry rewritten to describe FAKE_BYTES; its URL refuses connections by default."""
    fake = dataclasses.replace(
        CHECKPOINTS[ARCH], sha256=FAKE_SHA, size_bytes=len(FAKE_BYTES), url=_closed_port_url()
    )
    monkeypatch.setitem(CHECKPOINTS, ARCH, fake)
    return fake


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, as (folder, base URL); shut down afterwards."""
    root = tmp_path / "served"
    root.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval keeps shutdown() from costing half a second per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _write(path: Path, data: bytes = FAKE_BYTES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _point_url_at(monkeypatch: pytest.MonkeyPatch, spec: CheckpointSpec, url: str) -> None:
    monkeypatch.setitem(CHECKPOINTS, ARCH, dataclasses.replace(spec, url=url))


# --- registry and cache location ---------------------------------------------------------------


def test_registry_lists_metas_three_checkpoints_and_mobilesams_by_url_and_sha() -> None:
    sam2 = {"sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"}  # test_sam2
    assert set(CHECKPOINTS) == {"vit_h", "vit_l", "vit_b", "vit_t", *sam2}
    for arch, entry in ((a, e) for a, e in CHECKPOINTS.items() if a not in sam2):
        assert entry.arch == arch
        assert len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0
        if arch != "vit_t":
            assert entry.url == f"https://dl.fbaipublicfiles.com/segment_anything/{entry.filename}"
            assert entry.size_bytes > 100_000_000
    mobile = CHECKPOINTS["vit_t"]
    assert (
        mobile.url == "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
    )
    assert mobile.filename == "mobile_sam.pt" and 30_000_000 < mobile.size_bytes < 50_000_000


def test_cache_dir_prefers_samexp_cache_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMEXP_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("SAMEXP_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "samexp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "samexp"


def test_unknown_arch_raises_listing_the_known_ones() -> None:
    with pytest.raises(CheckpointError, match="vit_b, vit_h, vit_l"):
        resolve_checkpoint("vit_x")


# --- explicit path -----------------------------------------------------------------------------


def test_explicit_path_is_used_as_is_and_returns_its_sha(
    tmp_path: Path, spec: CheckpointSpec, cache: Path
) -> None:
    path = _write(tmp_path / "mine" / "weights.pth")
    resolved = resolve_checkpoint(ARCH, checkpoint=str(path))
    assert resolved.path == path
    assert resolved.sha256 == FAKE_SHA
    assert not cache.exists()  # nothing was copied


def test_explicit_fine_tuned_checkpoint_is_used_as_given_despite_its_unofficial_sha(
    tmp_path: Path, spec: CheckpointSpec, cache: Path
) -> None:
    own = b"my fine-tuned weights"
    path = _write(tmp_path / "finetuned.pth", own)
    resolved = resolve_checkpoint(ARCH, checkpoint=path)  # verify=True: a mismatch is no error
    assert resolved.path == path
    assert resolved.sha256 == hashlib.sha256(own).hexdigest() != spec.sha256
    assert not cache.exists()  # not replaced by, or copied beside, the official file


def test_explicit_path_works_for_an_arch_without_an_official_checkpoint(tmp_path: Path) -> None:
    path = _write(tmp_path / "tiny.pth")
    assert resolve_checkpoint("tiny", checkpoint=path).sha256 == FAKE_SHA


def test_missing_explicit_path_raises_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sam.pth"
    with pytest.raises(CheckpointError, match="nowhere"):
        resolve_checkpoint(ARCH, checkpoint=str(missing))


# --- cache and sidecar -------------------------------------------------------------------------


def test_cached_file_with_the_right_sha_is_used_without_download(
    spec: CheckpointSpec, cache: Path
) -> None:
    cached = _write(cache / spec.filename)
    resolved = resolve_checkpoint(ARCH)  # the spec URL refuses connections: a download would fail
    assert resolved == checkpoints.ResolvedCheckpoint(cached, FAKE_SHA)


def test_cache_dir_argument_overrides_the_environment(spec: CheckpointSpec, tmp_path: Path) -> None:
    cached = _write(tmp_path / "elsewhere" / spec.filename)
    assert resolve_checkpoint(ARCH, cache_dir=str(tmp_path / "elsewhere")).path == cached


def test_corrupt_cached_file_raises_with_expected_and_actual_sha(
    spec: CheckpointSpec, cache: Path
) -> None:
    cached = _write(cache / spec.filename, FAKE_BYTES[:100])  # a cut-off download
    with pytest.raises(CheckpointError) as excinfo:
        resolve_checkpoint(ARCH)
    message = str(excinfo.value)
    assert str(cached) in message
    assert FAKE_SHA in message
    assert hashlib.sha256(FAKE_BYTES[:100]).hexdigest() in message
    assert "delete" in message.lower()


def test_sidecar_avoids_rehashing_and_is_invalidated_when_the_file_changes(
    spec: CheckpointSpec, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    real_sha256_file = checkpoints.sha256_file

    def counting_sha256_file(path: Path) -> str:
        calls.append(Path(path))
        return real_sha256_file(path)

    monkeypatch.setattr(checkpoints, "sha256_file", counting_sha256_file)
    cached = _write(cache / spec.filename)

    resolve_checkpoint(ARCH)
    assert len(calls) == 1
    assert (cache / f"{spec.filename}.sha256").is_file()
    resolve_checkpoint(ARCH)
    resolve_checkpoint(ARCH)
    assert len(calls) == 1  # trusted the sidecar

    # Same size, different bytes, newer mtime: the sidecar no longer describes this file.
    cached.write_bytes(bytes(reversed(FAKE_BYTES)))
    stat = cached.stat()
    os.utime(cached, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(CheckpointError, match="corrupt"):
        resolve_checkpoint(ARCH)
    assert len(calls) == 2


# --- mirror ------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["argument", "environment"])
def test_mirror_folder_is_copied_into_the_cache_after_verification(
    via: str, tmp_path: Path, spec: CheckpointSpec, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    _write(mirror / spec.filename)
    if via == "environment":
        monkeypatch.setenv("SAMEXP_CHECKPOINT_MIRROR", str(mirror))
    resolved = resolve_checkpoint(ARCH, mirror=str(mirror) if via == "argument" else None)
    assert resolved.path == cache / spec.filename
    assert resolved.path.read_bytes() == FAKE_BYTES
    assert resolved.sha256 == FAKE_SHA
    assert list(cache.glob("*.part")) == []


def test_wrong_file_in_mirror_raises_and_is_not_copied(
    tmp_path: Path, spec: CheckpointSpec, cache: Path
) -> None:
    mirror = tmp_path / "mirror"
    _write(mirror / spec.filename, b"not the weights")
    with pytest.raises(CheckpointError, match="mirror"):
        resolve_checkpoint(ARCH, mirror=str(mirror))
    assert list(cache.iterdir()) == []


def test_http_mirror_replaces_the_official_url(
    spec: CheckpointSpec, cache: Path, served: tuple[Path, str]
) -> None:
    root, base_url = served
    _write(root / spec.filename)
    resolved = resolve_checkpoint(ARCH, mirror=base_url + "/")
    assert resolved.path == cache / spec.filename
    assert resolved.sha256 == FAKE_SHA


# --- download ----------------------------------------------------------------------------------


def test_download_lands_verified_in_the_cache_with_no_part_file_left(
    spec: CheckpointSpec, cache: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = served
    _write(root / spec.filename)
    _point_url_at(monkeypatch, spec, f"{base_url}/{spec.filename}")
    resolved = resolve_checkpoint(ARCH)
    assert resolved == checkpoints.ResolvedCheckpoint(cache / spec.filename, FAKE_SHA)
    assert resolved.path.read_bytes() == FAKE_BYTES
    assert list(cache.glob("*.part")) == []


def test_concurrent_downloads_both_end_with_the_complete_file(
    spec: CheckpointSpec, cache: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = served
    _write(root / spec.filename)
    _point_url_at(monkeypatch, spec, f"{base_url}/{spec.filename}")
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_checkpoint(ARCH))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [checkpoints.ResolvedCheckpoint(cache / spec.filename, FAKE_SHA)] * 4
    assert (cache / spec.filename).read_bytes() == FAKE_BYTES
    assert list(cache.glob("*.part")) == []


def test_download_with_wrong_sha_raises_and_leaves_nothing_in_the_cache(
    spec: CheckpointSpec, cache: Path, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base_url = served
    _write(root / spec.filename, b"tampered or truncated")
    _point_url_at(monkeypatch, spec, f"{base_url}/{spec.filename}")
    with pytest.raises(CheckpointError) as excinfo:
        resolve_checkpoint(ARCH)
    assert FAKE_SHA in str(excinfo.value)
    assert hashlib.sha256(b"tampered or truncated").hexdigest() in str(excinfo.value)
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("arch", [ARCH, "vit_t"])
@pytest.mark.parametrize("how", ["download=False", "SAMEXP_OFFLINE=1"])
def test_offline_raises_with_the_url_the_cache_path_and_the_ways_out(
    how: str, arch: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official = CHECKPOINTS[arch]  # the real entry: being offline, nothing is fetched
    if how == "SAMEXP_OFFLINE=1":
        monkeypatch.setenv("SAMEXP_OFFLINE", "1")
    with pytest.raises(CheckpointError) as excinfo:
        resolve_checkpoint(arch, download=how != "download=False")
    message = str(excinfo.value)
    assert official.url in message
    assert official.sha256 in message
    assert str(cache / official.filename) in message
    assert f"model.checkpoint=/path/to/{official.filename}" in message
    assert "SAMEXP_CHECKPOINT_MIRROR=" in message


def test_unreachable_url_raises_checkpoint_error_not_urlerror(
    spec: CheckpointSpec, cache: Path
) -> None:
    with pytest.raises(CheckpointError) as excinfo:  # spec.url is a closed port on 127.0.0.1
        resolve_checkpoint(ARCH)
    assert "could not be fetched" in str(excinfo.value)
    assert str(cache / spec.filename) in str(excinfo.value)
    assert list(cache.glob("*.part")) == []


def test_http_error_from_the_server_raises_checkpoint_error(
    spec: CheckpointSpec, served: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base_url = served  # serves nothing: a 404
    _point_url_at(monkeypatch, spec, f"{base_url}/missing.pth")
    with pytest.raises(CheckpointError, match="404"):
        resolve_checkpoint(ARCH)


# --- load_state_dict ---------------------------------------------------------------------------


def test_load_state_dict_round_trips_a_saved_state_dict(tmp_path: Path) -> None:
    state = {"image_encoder.w": torch.arange(6.0).reshape(2, 3), "mask_decoder.b": torch.ones(4)}
    torch.save(state, tmp_path / "sam.pth")
    loaded = load_state_dict(tmp_path / "sam.pth")
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert torch.equal(loaded[name], tensor)
        assert loaded[name].device.type == "cpu"


@pytest.mark.parametrize("content", [b"this is not a checkpoint", b""], ids=["garbage", "empty"])
def test_load_state_dict_raises_naming_the_path_for_a_garbage_file(
    content: bytes, tmp_path: Path
) -> None:
    path = _write(tmp_path / "broken.pth", content)
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_state_dict(path)


def test_load_state_dict_rejects_a_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state_dict(tmp_path / "list.pth")


def test_load_state_dict_raises_for_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "absent.pth")


def test_a_file_in_samexps_cache_is_said_to_be_outside_the_paths_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMEXP_CACHE", str(tmp_path / "cache"))
    said = in_cache(tmp_path / "cache" / "embeddings")
    assert said.endswith("(samexp's cache, shared by every paths root; SAMEXP_CACHE moves it)")
    assert in_cache(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
