"""One writer per run: the process that writes an MLflow run holds its lease, and a process that
would write the same run too (a resume while the run's own process lives, two resumes at once)
is refused in one line naming the holder: host, pid, last heartbeat.

Exact where the store allows it, safe where it cannot:

- The embedded sqlite store is a file on this machine, so the lease is a kernel lock (flock) on
  `<db>.leases/<run id>` beside the database, held while the run is open. The kernel grants it to
  one process at a time and drops it when that process dies, however it dies: a SIGKILLed or
  OOM-killed holder never blocks a resume, and no clock or heartbeat is trusted. The file holds
  the holder's host, pid and heartbeat only so that a refusal can name it.
- A tracking server shares no filesystem and MLflow has no compare-and-set, so the lease is a run
  tag (`samexp.lease`): a unique token and the holder. A claimer writes its tag, waits SETTLE_S
  and reads it back; of claimers that overlap only the last writer reads its own token
  (compare-and-set by write-then-verify). A holder already there is judged as a stale run is
  (`run_states.stale_reason`): on this host by whether its pid lives, elsewhere by a heartbeat
  younger than `tracking.stale_after_s`. Write-then-verify can let two claimers through only if
  one pauses longer than SETTLE_S between its read and its write, so the holder reads the tag
  again before every logged step and checkpoint, and one that finds another token stops
  (LeaseLost) without writing anything more to the run.
- A filesystem without flock (some NFS mounts) gets the tag lease.
- A new run takes its lease as it is created: nobody else knows its id yet, so no settle delay.
- Under torchrun only rank 0 talks to MLflow, so the lease is the job's, held by rank 0.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.tracking.names import LEASE
from samexp.tracking.states import HOST, PID, PID_SPACE, liveness_tags, stale_reason, who
from samexp.tracking.store_lock import try_lock

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there get the tag lease
    fcntl = None

log = logging.getLogger(__name__)

TOKEN = "token"
SETTLE_S = 2.0  # far longer than one store round trip between a claimer's read and its write
# a probe holds the file lock for microseconds, a holder for the run's whole life: a lock still
# taken after this long is a holder's
PATIENCE_S = 1.0
RECORD_BYTES = 1024  # the holder record, padded: rewritten in place with a single write


class RunBusy(SamexpError):
    """Another live process writes the run: this one must not."""


class LeaseLost(SamexpError):
    """This process's lease was taken over (tag lease only): it stops without writing more."""


def lease_dir(db: Path) -> Path:
    """Where the sqlite store `db` keeps its runs' lease files."""
    return db.with_name(f"{db.name}.leases")


class FileLease:
    """The lease of a run in an embedded sqlite store: flock on a file beside the database."""

    def __init__(self, run_id: str, db: Path) -> None:
        self.run_id, self.path = run_id, lease_dir(db) / run_id
        self._fd: int | None = None  # open, and locked, while held

    @staticmethod
    def works(db: Path) -> bool:
        """Whether the filesystem of `db` has working locks (some NFS mounts do not)."""
        if fcntl is None:
            return False
        try:
            lease_dir(db).mkdir(parents=True, exist_ok=True)
            with open(lease_dir(db) / ".probe", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
            return True
        except BlockingIOError:  # another process probing at this instant: locks work
            return True
        except OSError as e:
            log.warning("cannot lock files in %s (%s): run leases go through MLflow tags",
                        lease_dir(db), e)  # fmt: skip
            return False

    def holder(self) -> dict[str, str] | None:
        """The live holder's record, or None when the run is free (takes nothing)."""
        fd = self._open()
        try:
            if try_lock(fd, PATIENCE_S):
                return None
            text = os.pread(fd, RECORD_BYTES, 0)
        finally:
            os.close(fd)  # and with it any lock taken
        try:
            return json.loads(text)
        except ValueError:  # written this instant: say what is known
            return {}

    def probe(self) -> None:
        """RunBusy naming the holder when another process holds the run; takes nothing."""
        held = self.holder()
        if held is not None:
            raise busy(self.run_id, held)

    def claim(self, settle_s: float = SETTLE_S) -> None:
        """Take the run, or RunBusy naming its holder (`settle_s`: the tag lease's)."""
        fd = self._open()
        if not try_lock(fd, PATIENCE_S):
            os.close(fd)
            self.probe()  # names the holder (or finds it gone this instant, and goes on)
            return self.claim(settle_s)
        self._fd = fd
        self.beat()
        return None

    def verify(self) -> None:
        """Nothing to check: the kernel keeps the lock this process's until it ends."""

    def beat(self) -> None:
        if self._fd is not None:
            record = json.dumps(liveness_tags()).ljust(RECORD_BYTES).encode()
            os.pwrite(self._fd, record, 0)  # one write, in place: a reader never sees it empty

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # which drops the lock
            self._fd = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # never deleted: a process may be waiting on this very file's lock
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)


class TagLease:
    """The lease of a run on a tracking server: a run tag, claimed by write-then-verify.

    `read` returns the tag's value (None when absent); `write` sets it, or deletes it given None.
    """

    def __init__(self, run_id: str, read: Callable[[], str | None],
                 write: Callable[[str | None], None], stale_after_s: float) -> None:  # fmt: skip
        self.run_id, self._read, self._write = run_id, read, write
        self.stale_after_s = stale_after_s
        self.token: str | None = None

    def holder(self) -> dict[str, str] | None:
        return parse(self._read())

    def probe(self) -> None:
        held = self.holder()
        if alive_elsewhere(held, self.stale_after_s):
            raise busy(self.run_id, held, self.stale_after_s)

    def claim(self, settle_s: float = SETTLE_S) -> None:
        self.probe()
        token = uuid.uuid4().hex
        self._write(json.dumps({**liveness_tags(), TOKEN: token}))
        if settle_s:
            time.sleep(settle_s)
            held = self.holder()
            if held is None or held.get(TOKEN) != token:  # a later claimer wrote over ours
                raise busy(self.run_id, held or {}, self.stale_after_s)
        self.token = token

    def verify(self) -> None:
        if self.token is None:
            return
        held = self.holder()
        if held is None or held.get(TOKEN) != self.token:
            taker = f" by {who(held)}" if held else ""
            raise LeaseLost(
                f"MLflow run {self.run_id} was taken over{taker}: this process stops without "
                "writing to it again (one process writes a run at a time)"
            )

    def beat(self) -> None:
        if self.token is not None:
            self.verify()
            self._write(json.dumps({**liveness_tags(), TOKEN: self.token}))  # a new heartbeat

    def release(self) -> None:
        if self.token is not None:
            held = self.holder()
            if held is not None and held.get(TOKEN) == self.token:
                self._write(None)
            self.token = None


class Leases:
    """The leases of one store's runs, and the one this process holds while it has a run open.

    `read(run_id)` returns a run's lease tag (None when absent); `write(run_id, value)` sets it,
    or deletes it given None: the tag lease's only way to the store.
    """

    def __init__(self, db: Path | None, stale_after_s: float,
                 read: Callable[[str], str | None],
                 write: Callable[[str, str | None], None]) -> None:  # fmt: skip
        self.db, self.stale_after_s, self._read, self._write = db, stale_after_s, read, write
        self.held: FileLease | TagLease | None = None
        self._file_locks: bool | None = None  # whether the sqlite store's folder has flock

    def of(self, run_id: str) -> FileLease | TagLease:
        """A file lock beside a sqlite store whose folder has locks, else a run tag."""
        if self.db is not None and self._file_locks is None:
            self._file_locks = FileLease.works(self.db)
        if self.db is not None and self._file_locks:
            return FileLease(run_id, self.db)
        return TagLease(run_id, lambda: self._read(run_id),
                        lambda value: self._write(run_id, value), self.stale_after_s)  # fmt: skip

    def hold(self, run_id: str, settle_s: float = SETTLE_S) -> None:
        """Take the run's lease for this process, or RunBusy naming its holder."""
        lease = self.of(run_id)
        lease.claim(settle_s)
        self.held = lease

    def check(self) -> None:
        """Before a step or a checkpoint is written: still this process's run (LeaseLost if
        not). A store that cannot answer costs a warning: the write that follows meets it too."""
        if self.held is None:
            return
        try:
            self.held.verify()
        except LeaseLost:
            raise
        except Exception as e:  # noqa: BLE001 - MLflow and network errors alike
            log.warning("could not check the lease of MLflow run %s: %s", self.held.run_id, e)

    def beat(self) -> None:
        if self.held is not None:
            self.held.beat()

    def release(self) -> None:
        if self.held is not None:
            try:
                self.held.release()
            except Exception as e:  # noqa: BLE001 - a tag lease left behind lapses on its own
                log.warning("could not release the lease of MLflow run %s: %s", self.held.run_id, e)  # fmt: skip
            self.held = None

    def taken_elsewhere(self, run_id: str, tags: dict[str, str]) -> bool:
        """Whether a live process other than this one holds the run (`tags`: the run's)."""
        lease = self.of(run_id)
        if isinstance(lease, FileLease):
            return lease.holder() is not None
        return alive_elsewhere(parse(tags.get(LEASE)), self.stale_after_s)


def parse(value: str | None) -> dict[str, str] | None:
    """A tag lease's holder, or None for no (or an unreadable) lease."""
    try:
        held = json.loads(value) if value else None
    except ValueError:
        return None
    return held if isinstance(held, dict) else None


def alive_elsewhere(held: dict[str, str] | None, stale_after_s: float) -> bool:
    """Whether a lease record names a live process other than this one."""
    if held is None:
        return False
    mine = liveness_tags()
    if all(held.get(key) == mine.get(key) for key in (HOST, PID, PID_SPACE)):
        return False  # this process: a lease it left behind is its own to take again
    return stale_reason(held, stale_after_s) is None


def busy(run_id: str, held: dict[str, str], stale_after_s: float | None = None) -> RunBusy:
    """The one line a refused writer prints: who holds the run and what to do (`stale_after_s`:
    when a holder judged by its heartbeat is taken for gone; None for the exact file lease)."""
    lapse = "" if stale_after_s is None else (
        f"; if that process is gone, its lease lapses {stale_after_s:g} s after its last "
        "heartbeat (tracking.stale_after_s)"
    )  # fmt: skip
    return RunBusy(
        f"MLflow run {run_id} is being written by another process ({who(held)}): one process "
        f"writes a run at a time; wait for it to end, or stop it (kill -TERM "
        f"{held.get(PID, '<pid>')} on {held.get(HOST, 'its host')}: it checkpoints) and resume "
        f"again{lapse}"
    )
