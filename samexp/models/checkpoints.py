"""Official SAM, MobileSAM and SAM 2.1 checkpoints: where they come from, and finding, fetching and
verifying them.

Lookup order is explicit path, cache, mirror, official URL. A file only enters the cache after its
SHA-256 matched the published one (or, for a file whose publisher gives no hash, its size matched),
so a half-finished download is never mistaken for weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from tqdm import tqdm

from samexp.config.atomic import atomic_path
from samexp.config.errors import CheckpointError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # 1 MiB: large enough to be fast, small enough that 2.5 GB never sits in memory
_TIMEOUT_S = 30.0  # per socket operation, not for the whole download
_MIRROR_ENV = "SAMEXP_CHECKPOINT_MIRROR"
# Bytes, human-scaled; disable=None hides the bar when stderr is not a terminal (CI, log files).
_PROGRESS = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "disable": None}


@dataclass(frozen=True)
class CheckpointSpec:
    """One published SAM checkpoint; its sha256 is what makes a local copy trustworthy. Where the
    publisher gives none (None: SAM 2.1) only its size can be checked, and the log says so."""

    arch: str
    filename: str
    url: str
    sha256: str | None
    size_bytes: int


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint on local disk and the SHA-256 of its bytes (recorded with runs and adapters)."""

    path: Path
    sha256: str


CHECKPOINTS: dict[str, CheckpointSpec] = {
    "vit_h": CheckpointSpec(
        arch="vit_h",
        filename="sam_vit_h_4b8939.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        size_bytes=2564550879,
    ),
    "vit_l": CheckpointSpec(
        arch="vit_l",
        filename="sam_vit_l_0b3195.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        size_bytes=1249524607,
    ),
    "vit_b": CheckpointSpec(
        arch="vit_b",
        filename="sam_vit_b_01ec64.pth",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        size_bytes=375042383,
    ),
    # MobileSAM's own file, linked from its README, which gives no checksum. The SHA-256 and size
    # are the ones other tools pin for this file: micro-sam's model registry (micro_sam/util.py,
    # "vit_t"), and projects that fetch this URL and record 40728226 bytes with the same hash.
    "vit_t": CheckpointSpec(
        arch="vit_t",
        filename="mobile_sam.pt",
        url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        size_bytes=40728226,
    ),
    # SAM 2.1: the URLs of upstream's checkpoints/download_ckpts.sh. Meta publishes no hash for
    # them (none in the script, the package or the file names), so they are checked by size.
    **{
        f"sam2.1_hiera_{size}": CheckpointSpec(
            arch=f"sam2.1_hiera_{size}",
            filename=f"sam2.1_hiera_{name}.pt",
            url=f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{name}.pt",
            sha256=None,
            size_bytes=size_bytes,
        )
        for size, name, size_bytes in (
            ("t", "tiny", 156008466),
            ("s", "small", 184416285),
            ("b+", "base_plus", 323606802),
            ("l", "large", 898083611),
        )
    },
}
_SIZE_ONLY = "size only: Meta publishes no SHA-256 for SAM 2.1 files"
_said_size_only: set[str] = set()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks so a multi-GB checkpoint never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """`$SAMEXP_CACHE`, else `$XDG_CACHE_HOME/samexp`, else `~/.cache/samexp` (XDG convention)."""
    if os.environ.get("SAMEXP_CACHE"):
        return Path(os.environ["SAMEXP_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "samexp"


def in_cache(path: Path) -> str:
    """`path`, saying so when it is in samexp's cache: outside the paths root on purpose (a
    checkpoint, embeddings and a run's downloaded weights serve every root and checkout alike),
    so a user who looks only under the root learns where else samexp writes."""
    try:
        Path(path).resolve().relative_to(default_cache_dir().resolve())
    except ValueError:
        return str(path)
    return f"{path} (samexp's cache, shared by every paths root; SAMEXP_CACHE moves it)"


def resolve_checkpoint(
    arch: str,
    checkpoint: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    mirror: str | None = None,
    download: bool = True,
    verify: bool = True,
) -> ResolvedCheckpoint:
    """Find the weights for `arch`: explicit path, then cache, then mirror, then the official URL.

    With `verify=False` a SHA-256 mismatch is logged as a warning instead of raised.
    `SAMEXP_OFFLINE=1` turns downloading off whatever `download` says.
    """
    if checkpoint is not None:
        return _resolve_explicit(Path(checkpoint).expanduser(), CHECKPOINTS.get(arch), verify)
    spec = CHECKPOINTS.get(arch)
    if spec is None:
        known = ", ".join(sorted(CHECKPOINTS))
        raise CheckpointError(f"Unknown SAM arch {arch!r}; known archs: {known}.")
    cached = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / spec.filename

    if cached.is_file():
        sha = _known_sha(cached)
        problem = f"The cached checkpoint {cached} is corrupt or partial: delete it and run again."
        _check(sha, cached.stat().st_size, spec, verify, problem)
        _remember_sha(cached, sha, spec)
        return ResolvedCheckpoint(cached, sha)

    url = spec.url
    mirror = mirror or os.environ.get(_MIRROR_ENV) or None
    if mirror and mirror.startswith(("http://", "https://")):
        url = f"{mirror.rstrip('/')}/{spec.filename}"
    elif mirror and (Path(mirror).expanduser() / spec.filename).is_file():
        return _copy_from_mirror(Path(mirror).expanduser() / spec.filename, cached, spec, verify)

    if os.environ.get("SAMEXP_OFFLINE", "").lower() in {"1", "true", "yes"}:
        download = False
    if not download:
        reason = "downloading is disabled (download=False or SAMEXP_OFFLINE=1)"
        raise CheckpointError(_not_fetched_message(spec, url, cached, reason))
    log.info("Downloading SAM %s checkpoint from %s to %s", arch, url, in_cache(cached))
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            sha = _stream_into(cached, response, total, spec, verify, origin=f"The download {url}")
    except OSError as exc:  # URLError, HTTPError, refused connections and timeouts are all OSErrors
        raise CheckpointError(_not_fetched_message(spec, url, cached, str(exc))) from exc
    _remember_sha(cached, sha, spec)
    return ResolvedCheckpoint(cached, sha)


def load_state_dict(
    path: str | os.PathLike[str], unwrap: str | None = None
) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors onto the CPU; `weights_only` means a file can never run code.
    `unwrap`: the key the state dict sits under (SAM 2's files are `{"model": state_dict}`)."""
    if not Path(path).is_file():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same to a user
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {first_line}). "
            "Was the download cut short? Delete it and fetch it again."
        ) from exc
    if unwrap is not None:
        if not isinstance(state, dict) or unwrap not in state:
            raise CheckpointError(
                f"{path} has no {unwrap!r} entry: this model's checkpoints are saved as "
                f"torch.save({{{unwrap!r}: state_dict}}, path)."
            )
        state = state[unwrap]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__} that is not a state dict (name -> tensor); "
            "pass a SAM checkpoint saved with torch.save(model.state_dict(), path)."
        )
    return state


def _resolve_explicit(path: Path, spec: CheckpointSpec | None, verify: bool) -> ResolvedCheckpoint:
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} (model.checkpoint) does not exist. Fix the path, or leave "
            "model.checkpoint unset to use the official weights."
        )
    sha = _known_sha(path)
    if verify and spec is not None and not _verified(sha, path.stat().st_size, spec):
        # A user's own fine-tuned full checkpoint is a legitimate input: news, not an error.
        log.info("%s is not the official SAM %s file; using it as given.", path, spec.arch)
    return ResolvedCheckpoint(path, sha)


def _copy_from_mirror(
    source: Path, cached: Path, spec: CheckpointSpec, verify: bool
) -> ResolvedCheckpoint:
    log.info("Copying SAM %s checkpoint from mirror %s to %s", spec.arch, source, cached)
    try:
        with source.open("rb") as f:
            sha = _stream_into(
                cached, f, source.stat().st_size, spec, verify, origin=f"The mirror file {source}"
            )
    except OSError as exc:
        raise CheckpointError(f"Could not copy mirror file {source} to {cached}: {exc}") from exc
    _remember_sha(cached, sha, spec)
    return ResolvedCheckpoint(cached, sha)


def _stream_into(
    dest: Path, source: BinaryIO, total: int | None, spec: CheckpointSpec, verify: bool, origin: str
) -> str:
    """Copy `source` to `dest`, hashing on the way; `dest` appears only whole and verified.

    Each writer gets its own temp name and `os.replace` is atomic, so two processes fetching at
    once both end with a complete file instead of interleaved bytes.
    """
    digest, size = hashlib.sha256(), 0
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, tqdm(total=total, desc=dest.name, **_PROGRESS) as bar:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        problem = f"{origin} is not the official {spec.filename}; nothing was saved."
        _check(digest.hexdigest(), size, spec, verify, problem)
    return digest.hexdigest()


def _verified(sha: str, size: int, spec: CheckpointSpec) -> bool:
    """Whether a file is the published one: its SHA-256, or its size where none is published."""
    return sha == spec.sha256 if spec.sha256 is not None else size == spec.size_bytes


def _check(sha: str, size: int, spec: CheckpointSpec, verify: bool, problem: str) -> None:
    if spec.sha256 is None and spec.filename not in _said_size_only:
        _said_size_only.add(spec.filename)
        log.info("%s checked by %s", spec.filename, _SIZE_ONLY)
    if _verified(sha, size, spec):
        return
    if spec.sha256 is None:
        message = (f"{problem}\n  expected size: {spec.size_bytes} bytes ({_SIZE_ONLY})"
                   f"\n  actual size:   {size} bytes")  # fmt: skip
    else:
        message = f"{problem}\n  expected SHA-256: {spec.sha256}\n  actual SHA-256:   {sha}"
    if verify:
        raise CheckpointError(message)
    log.warning("%s\n(verify=False: using it anyway)", message)


def _sidecar(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _known_sha(path: Path) -> str:
    """The file's SHA-256, read from its sidecar while size and mtime say the file is unchanged."""
    stat = path.stat()
    try:
        record = json.loads(_sidecar(path).read_text())
        if (record["size"], record["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no sidecar, or a broken one: hashing is always a correct fallback
    return sha256_file(path)


def _remember_sha(path: Path, sha: str, spec: CheckpointSpec) -> None:
    """Write the sidecar for a verified file, so the next run skips hashing gigabytes."""
    stat = path.stat()
    if not _verified(sha, stat.st_size, spec):
        return  # only verified files earn a sidecar
    record = json.dumps({"sha256": sha, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    try:
        # A plain write is enough: a torn sidecar fails to parse and the file is simply rehashed.
        _sidecar(path).write_text(record)
    except OSError as exc:  # a read-only shared cache still works; it is just hashed every run
        log.debug("Could not write %s: %s", _sidecar(path), exc)


def _not_fetched_message(spec: CheckpointSpec, url: str, cached: Path, reason: str) -> str:
    lines = [
        f"The SAM {spec.arch} checkpoint could not be fetched: {reason}",
        f"  official URL:     {spec.url}",
        f"  expected SHA-256: {spec.sha256}"
        if spec.sha256
        else f"  expected size:    {spec.size_bytes} bytes ({_SIZE_ONLY})",
    ]
    if url != spec.url:
        lines.append(f"  tried mirror:     {url}")
    lines += [
        "Any one of these fixes it:",
        f"  - pass a local copy:      model.checkpoint=/path/to/{spec.filename}",
        f"  - put the file at:        {cached}",
        f"  - point to a mirror:      {_MIRROR_ENV}=/folder/with/checkpoints (or an http(s) URL)",
    ]
    return "\n".join(lines)
