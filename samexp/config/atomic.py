"""Files that appear whole or not at all: write to a unique name beside the target, then rename.

A job killed mid-write, a full disk or two processes writing the same file at once must never
leave a half-written weights file, cache entry or checkpoint that a later run trusts.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path to write to; renamed onto `dest` when the block succeeds, removed when it
    fails. Same folder, so `os.replace` is an atomic rename on one filesystem; a unique name, so
    concurrent writers never share a temporary file. `dest` gets `mode` (a secret: 0o600), by
    default the mode open() gives under the umask, whatever the writer did to the temporary file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        # the mode an ordinary open() gives: writers that go through their own temporary file
        # (safetensors' save_file) leave it 0600 whatever the umask
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only read by setting, which
    would race with threads creating files meanwhile); Linux states it in /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
