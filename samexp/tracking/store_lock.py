"""One process at a time creates (or upgrades) an embedded sqlite MLflow store.

The first process to open a fresh store runs MLflow's schema migrations; two doing so at once
break each other (alembic: "Online migration expected to match one row"), so N runs started
together on a fresh `mlruns/` would all but one crash. An exclusive lock beside the database
serialises that first open; the kernel drops it when its holder dies, so a killed process never
leaves the store locked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from samexp.config.errors import SamexpError

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first runs there are not guarded
    fcntl = None

log = logging.getLogger(__name__)

TIMEOUT_S = 120.0  # creating a store takes seconds; minutes means a stuck process


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` store, or None for a server or an in-memory store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(db) if db not in ("", ":memory:") else None


@contextlib.contextmanager
def store_lock(tracking_uri: str, timeout_s: float = TIMEOUT_S) -> Iterator[None]:
    """Hold `<db>.lock` beside a sqlite store, waiting at most `timeout_s`; other stores need
    none (a server serialises its own migrations)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)  # sqlite creates the file, not its folder
    if db is None or fcntl is None:
        yield
        return
    lock = db.with_name(f"{db.name}.lock")
    with open(lock, "a") as handle:
        locked = _acquire(handle, lock, timeout_s)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def try_lock(handle, seconds: float) -> bool:
    """Take the exclusive flock of `handle` (a file or its descriptor), trying for `seconds`;
    False if another process still holds it then. A filesystem without locks raises OSError."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def _acquire(handle, lock: Path, timeout_s: float) -> bool:
    try:
        if try_lock(handle, timeout_s):
            return True
    except OSError as e:  # a filesystem without locks (some NFS mounts): go on unlocked
        log.warning("cannot lock %s (%s); opening the MLflow store unlocked", lock, e)
        return False
    raise SamexpError(
        f"waited {timeout_s:g} s for {lock}: another process is creating or upgrading the MLflow "
        "store and has not finished; is one stuck?"
    )
