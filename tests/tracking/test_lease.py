"""One writer per run: a run's lease goes to one process; a holder that lives is named in the
refusal, a holder that is gone never blocks; a tag-lease holder that lost its tag stops before it
writes again. Real processes racing for a run: tests/reliability/test_run_lease.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from samexp.tracking import lease as run_lease
from samexp.tracking.lease import LEASE, TOKEN, FileLease, LeaseLost, RunBusy, TagLease
from samexp.tracking.states import liveness_tags
from samexp.tracking.tracker import Tracker

STALE_S = 3600.0


class Tag:
    """A run tag in memory, as a tracking server keeps it."""

    def __init__(self) -> None:
        self.value: str | None = None

    def lease(self) -> TagLease:
        return TagLease("run1", lambda: self.value, self.write, STALE_S)

    def write(self, value: str | None) -> None:
        self.value = value

    def held_by(self, **who: str) -> None:
        """Another process's lease: this host and a pid unless told otherwise."""
        self.value = json.dumps({**liveness_tags(), TOKEN: "theirs", **who})


def _finished_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture(autouse=True)
def quick_patience(monkeypatch):
    monkeypatch.setattr(run_lease, "PATIENCE_S", 0.05)


def test_a_tag_lease_held_by_a_live_process_is_refused_naming_it():
    tag = Tag()
    tag.held_by(**{"samexp.pid": str(os.getppid())})  # alive, on this host
    with pytest.raises(RunBusy, match=rf"run1 .* \(pid {os.getppid()} on host {socket.gethostname()}, last heartbeat 20"):  # fmt: skip
        tag.lease().claim(settle_s=0)
    assert json.loads(tag.value)[TOKEN] == "theirs"  # nothing written


def test_a_tag_lease_whose_process_is_gone_is_taken_over():
    tag = Tag()
    tag.held_by(**{"samexp.pid": str(_finished_pid())})
    lease = tag.lease()
    lease.claim(settle_s=0)
    assert json.loads(tag.value)[TOKEN] == lease.token
    lease.release()
    assert tag.value is None


def test_a_holder_on_another_host_is_judged_by_its_heartbeat():
    tag = Tag()
    tag.held_by(**{"samexp.host": "elsewhere", "samexp.heartbeat": f"{time.time():.0f}"})
    with pytest.raises(RunBusy, match=r"on host elsewhere.*lapses 3600 s after its last heartbeat"):
        tag.lease().claim(settle_s=0)
    tag.held_by(**{"samexp.host": "elsewhere", "samexp.heartbeat": f"{time.time() - 2 * STALE_S:.0f}"})  # fmt: skip
    tag.lease().claim(settle_s=0)


def test_of_two_claims_that_overlap_only_the_last_writer_holds(monkeypatch):
    tag = Tag()
    # another process writes its claim while this one waits for the store to settle
    monkeypatch.setattr(run_lease.time, "sleep", lambda s: tag.held_by(**{"samexp.pid": str(os.getppid())}))  # fmt: skip
    with pytest.raises(RunBusy, match=f"pid {os.getppid()}"):
        tag.lease().claim(settle_s=2)


def test_a_holder_whose_tag_was_taken_stops_before_writing_and_leaves_the_tag_alone():
    tag = Tag()
    lease = tag.lease()
    lease.claim(settle_s=0)
    lease.beat()
    tag.held_by(**{"samexp.pid": str(os.getppid())})
    with pytest.raises(LeaseLost, match=f"taken over by pid {os.getppid()}"):
        lease.beat()
    lease.release()
    assert json.loads(tag.value)[TOKEN] == "theirs"


def test_a_file_lease_goes_to_one_holder_and_is_free_once_released(tmp_path: Path):
    held = FileLease("run1", tmp_path / "mlflow.db")
    held.claim()
    with pytest.raises(
        RunBusy, match=rf"run1 .* \(pid {os.getpid()} on host .*, last heartbeat 20"
    ):
        FileLease("run1", tmp_path / "mlflow.db").claim()  # another open file: as another process
    FileLease("run2", tmp_path / "mlflow.db").claim()  # runs are leased apart
    held.release()
    FileLease("run1", tmp_path / "mlflow.db").probe()


# --- the tracker's side ----------------------------------------------------------------------
def _tracker(tmp_path: Path) -> Tracker:
    return Tracker(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "art")
    )


def test_a_run_holds_its_lease_while_open_and_a_resume_of_it_is_refused(tmp_path: Path):
    tracker = _tracker(tmp_path)
    with pytest.raises(KeyboardInterrupt), tracker.start_run("r", params={}, tags={}):
        lease = FileLease(tracker.run_id, tmp_path / "mlflow.db")
        assert lease.holder()["samexp.pid"] == str(os.getpid())
        raise KeyboardInterrupt
    assert lease.holder() is None  # released as the run ended
    lease.claim()  # held elsewhere now
    with pytest.raises(RunBusy, match=f"pid {os.getpid()}"):
        _tracker(tmp_path).check_free(tracker.run_id)
    with pytest.raises(RunBusy), _tracker(tmp_path).start_run("r", {}, {}, resume_run_id=tracker.run_id):  # fmt: skip
        pass
    run = MlflowClient(tracker.tracking_uri).get_run(tracker.run_id)
    assert run.info.status == "KILLED" and "samexp.resumptions" not in run.data.tags  # untouched


def test_a_tag_lease_holder_that_lost_the_run_leaves_it_to_the_new_holder(tmp_path: Path):
    tracker = _tracker(tmp_path)
    tracker.leases._file_locks = False  # as on a tracking server
    with pytest.raises(LeaseLost), tracker.start_run("r", params={}, tags={}):
        tracker.log_metrics({"train/loss": 1.0}, step=1)
        theirs = json.dumps({**liveness_tags(), "samexp.pid": str(os.getppid()), TOKEN: "theirs"})
        tracker.client().set_tag(tracker.run_id, LEASE, theirs)
        tracker.log_metrics({"train/loss": 0.5}, step=2)
    run = MlflowClient(tracker.tracking_uri).get_run(tracker.run_id)
    assert run.info.status == "RUNNING" and run.data.tags[LEASE] == theirs  # the new holder's
    assert run.data.metrics == {"train/loss": 1.0}  # step 2 never written
