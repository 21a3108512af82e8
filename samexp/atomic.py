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
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path to write to; renamed onto `dest` when the block succeeds, removed when it
    fails. Same folder, so `os.replace` is an atomic rename on one filesystem; a unique name, so
    concurrent writers never share a temporary file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
