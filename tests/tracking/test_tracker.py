"""The MLflow sink: flat params, provenance tags, a no-op when disabled, runs stored where configured;
runs that are interrupted, killed or resumed end in a state that says so and how to go on."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from PIL import Image

from samexp.config.errors import Interrupted, SamexpError
from samexp.tracking.states import interrupted_note, liveness_tags
from samexp.tracking.tracker import Tracker, flatten, provenance
from tests.conftest import REPO


def test_flatten_joins_nested_keys_with_dots_and_keeps_leaves():
    nested = {"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None, "g": {}}
    assert flatten(nested) == {"a.b": 1, "a.c.d": "x", "e": [1, 2], "f": None}


def test_provenance_records_git_state_package_versions_and_overrides():
    tags = provenance(["adapter=lora", "trainer.epochs=3"])
    assert tags["overrides"] == "adapter=lora trainer.epochs=3"
    assert len(tags["git_commit"]) == 40  # the repo is a git checkout in dev and CI
    assert tags["git_dirty"] in {"true", "false"}
    assert tags["version.torch"]
    assert tags["version.mlflow"]


def test_disabled_tracker_is_a_no_op_that_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(
        enabled=False,
        tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        artifact_root=str(tmp_path / "artifacts"),
    )
    with tracker.start_run("name", params={"a": 1}, tags={"t": "v"}):
        tracker.log_metrics({"x": 1.0}, step=1)
        tracker.log_text("text", "a.txt")
        tracker.log_json({"a": 1}, "a.json")
        tracker.log_image(np.zeros((4, 4, 3), dtype=np.uint8), "a.png")
        tracker.log_artifact(__file__, "files")
    assert tracker.run_id is None
    assert list(tmp_path.iterdir()) == []


def test_tracker_creates_the_experiment_with_artifacts_under_artifact_root(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/db/mlflow.db"  # the database's folder is created on demand
    root = tmp_path / "artifacts"
    tracker = Tracker(tracking_uri=uri, artifact_root=str(root), experiment="tracking-test")
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[2:6, 3:9] = (255, 0, 0)
    with tracker.start_run("my-run", params={"a.b": 1, "long": "x" * 7000}, tags={"t": "v"}):
        tracker.log_metrics({"train/loss": 0.5}, step=3)
        tracker.log_image(image, "comparisons/one.png")
        tracker.log_json({"k": [1, 2]}, "metrics/rows.json")

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    experiment = client.get_experiment_by_name("tracking-test")
    assert run.info.experiment_id == experiment.experiment_id
    assert experiment.artifact_location == root.resolve().as_uri()
    assert run.info.artifact_uri.startswith(root.resolve().as_uri())
    assert run.info.run_name == "my-run"
    assert run.data.tags["t"] == "v"
    assert run.data.params["a.b"] == "1"
    # MLflow rejects params over 6000 characters; the tracker shortens them instead of failing
    assert len(run.data.params["long"]) == 6000
    assert [
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")
    ] == [(3, 0.5)]

    logged = list(root.rglob("comparisons/one.png"))
    assert len(logged) == 1
    assert np.array_equal(np.asarray(Image.open(logged[0]).convert("RGB")), image)


def test_configured_run_name_overrides_the_one_the_runner_chooses(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(tracking_uri=uri, artifact_root=str(tmp_path / "art"), run_name="mine")
    with tracker.start_run("lora-r8-rings-tiny", params={}, tags={}):
        pass
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.run_name == "mine"


def test_a_second_run_reuses_the_existing_experiment(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ids = []
    for _ in range(2):
        tracker = Tracker(tracking_uri=uri, artifact_root=str(tmp_path / "art"), experiment="again")
        with tracker.start_run("r", params={}, tags={}):
            pass
        ids.append(MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.experiment_id)
    assert ids[0] == ids[1]


# --- interrupted, killed and resumed runs -------------------------------------------------------

DOOMED = """
import sys, time
from samexp.tracking.tracker import Tracker
tracker = Tracker(tracking_uri=sys.argv[1], artifact_root=sys.argv[2], experiment="e")
with tracker.start_run("doomed", params={"a": 1}, tags={"overrides": "trainer.epochs=3"}):
    print(tracker.run_id, flush=True)
    time.sleep(600)
"""


def _tracker(tmp_path: Path, **kwargs) -> Tracker:
    return Tracker(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_root=str(tmp_path / "art"),
        experiment="e",
        **kwargs,
    )


def _client(tracker: Tracker) -> MlflowClient:
    return MlflowClient(tracking_uri=tracker.tracking_uri)


# the tests that copy `killed_store` go to one xdist worker, which makes it once
KILLED_STORE = pytest.mark.xdist_group("killed_store")


@pytest.fixture(scope="module")
def killed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store holding a run whose process was SIGKILLed mid-run, and that run's id: made once
    (a process importing MLflow takes seconds), copied by each test that reconciles it."""
    home = tmp_path_factory.mktemp("killed")
    process = subprocess.Popen(
        [sys.executable, "-c", DOOMED, f"sqlite:///{home}/mlflow.db", str(home / "art")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = process.stdout.readline().strip()
        assert run_id, process.stderr.read()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return home / "mlflow.db", run_id


@pytest.fixture
def killed_run(tmp_path: Path, killed_store: tuple[Path, str]) -> str:
    """A run whose process was SIGKILLed mid-run, in this test's own copy of the store: it never
    ended, MLflow still says RUNNING."""
    store, run_id = killed_store
    with contextlib.closing(sqlite3.connect(store)) as source:
        with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as copy:
            source.backup(copy)
    assert MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id).info.status == "RUNNING"
    return run_id


def test_a_run_records_its_host_pid_and_a_heartbeat_the_tracker_refreshes(tmp_path: Path):
    tracker = _tracker(tmp_path)
    with tracker.start_run("r", params={}, tags={}):
        tags = _client(tracker).get_run(tracker.run_id).data.tags
        assert tags["samexp.host"] == socket.gethostname()
        assert tags["samexp.pid"] == str(os.getpid())
        assert abs(int(tags["samexp.heartbeat"]) - time.time()) < 60
        _client(tracker).set_tag(tracker.run_id, "samexp.heartbeat", "1000")
        tracker.heartbeat()
        beat = _client(tracker).get_run(tracker.run_id).data.tags["samexp.heartbeat"]
    assert abs(int(beat) - time.time()) < 60


def test_heartbeats_are_time_based_one_per_heartbeat_s_however_often_training_calls(tmp_path: Path):
    """Training calls heartbeat() after every optimizer step: the store sees one per heartbeat_s,
    and a long epoch keeps the run alive (before, one came per epoch: an epoch longer than
    stale_after_s made a live run look dead)."""
    tracker = _tracker(tmp_path, heartbeat_s=3600.0)
    with tracker.start_run("r", params={}, tags={}):
        tracker.heartbeat()
        _client(tracker).set_tag(tracker.run_id, "samexp.heartbeat", "1000")
        tracker.heartbeat()  # within heartbeat_s of the last: not written
        assert _client(tracker).get_run(tracker.run_id).data.tags["samexp.heartbeat"] == "1000"
        tracker._last_beat -= 3600.0  # an hour on
        tracker.heartbeat()
        beat = _client(tracker).get_run(tracker.run_id).data.tags["samexp.heartbeat"]
    assert abs(int(beat) - time.time()) < 60
    assert _tracker(tmp_path, stale_after_s=100.0).heartbeat_s == 25.0  # never rarer than that


def test_a_heartbeat_the_store_refuses_is_a_warning_not_a_failure(tmp_path: Path, caplog):
    tracker = _tracker(tmp_path)
    with tracker.start_run("r", params={}, tags={}):

        def refuse(*args):
            raise MlflowException("database is locked")

        tracker.client().set_tag = refuse
        tracker.heartbeat()
    assert "heartbeat" in caplog.text and "database is locked" in caplog.text
    assert _client(tracker).get_run(tracker.run_id).info.status == "FINISHED"


def test_heartbeat_and_reconciling_are_no_ops_without_a_run(tmp_path: Path):
    tracker = _tracker(tmp_path, enabled=False)
    tracker.heartbeat()
    assert tracker.find_resumable() is None
    assert tracker.reconcile_stale_runs() == []
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_run_ends_killed_and_says_how_to_resume(tmp_path: Path):
    tracker = _tracker(tmp_path)
    stop = Interrupted("SIGTERM", 143, "epoch 5 step 37", "python -m samexp trainer.resume=x")
    with pytest.raises(Interrupted), tracker.start_run("r", params={}, tags={}):
        raise stop
    run = _client(tracker).get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["samexp.state"] == "INTERRUPTED"
    assert run.data.tags["samexp.interrupted"] == str(stop)
    assert "samexp.error" not in run.data.tags


def test_ctrl_c_ends_the_run_killed_and_interrupted_and_still_stops_the_program(tmp_path: Path):
    tracker = _tracker(tmp_path)
    with (
        pytest.raises(KeyboardInterrupt),
        tracker.start_run(
            "r", params={}, tags={"overrides": "trainer.epochs=3 trainer.resume=old"}
        ),
    ):
        raise KeyboardInterrupt
    run = _client(tracker).get_run(tracker.run_id)
    assert (run.info.status, run.data.tags["samexp.state"]) == ("KILLED", "INTERRUPTED")
    assert run.data.tags["samexp.interrupted"].endswith(
        f"resume with: python -m samexp trainer.epochs=3 trainer.resume={tracker.run_id}"
    )


@pytest.mark.parametrize(
    "error, status, state",
    [
        (type("TrialPruned", (Exception,), {})(), "KILLED", "PRUNED"),
        (ValueError("boom"), "FAILED", "FAILED"),
    ],
    ids=["pruned", "error"],
)
def test_a_pruned_trial_is_killed_and_an_error_fails_the_run(tmp_path: Path, error, status, state):
    tracker = _tracker(tmp_path)
    with pytest.raises(type(error)), tracker.start_run("r", params={}, tags={}):
        raise error
    run = _client(tracker).get_run(tracker.run_id)
    assert (run.info.status, run.data.tags["samexp.state"]) == (status, state)
    assert run.data.tags.get("samexp.error") == ("ValueError: boom" if state == "FAILED" else None)


def test_resuming_reopens_the_same_run_keeps_its_params_and_counts_resumptions(tmp_path: Path):
    first = _tracker(tmp_path)
    with pytest.raises(KeyboardInterrupt), first.start_run("r", params={"lr": 0.1}, tags={}):
        first.log_metrics({"train/loss": 0.9}, step=1)
        raise KeyboardInterrupt
    for resumption in (1, 2):
        again = _tracker(tmp_path)
        # a changed param would make MLflow refuse the run; resuming never logs params again
        with again.start_run("r", params={"lr": 0.5}, tags={}, resume_run_id=first.run_id):
            assert again.run_id == first.run_id
            assert again.run_status(first.run_id) == "RUNNING"
            assert _client(first).get_run(first.run_id).data.metrics == {"train/loss": 0.9}
        run = _client(first).get_run(first.run_id)
        assert run.data.tags["samexp.resumptions"] == str(resumption)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
    assert len(_client(first).search_runs([run.info.experiment_id])) == 1


def test_resuming_an_unknown_run_names_it_and_the_store(tmp_path: Path):
    tracker = _tracker(tmp_path)
    with pytest.raises(SamexpError, match=f"0123abcd.*{tmp_path}/mlflow.db"):
        with tracker.start_run("r", params={}, tags={}, resume_run_id="0123abcd"):
            pass
    with pytest.raises(SamexpError, match="0123abcd"):
        tracker.run_status("0123abcd")


def test_an_artifact_downloads_and_a_missing_one_is_a_one_line_error(tmp_path: Path):
    tracker = _tracker(tmp_path)
    with tracker.start_run("r", params={}, tags={}):
        tracker.log_text("epochs: 3\n", "config.yaml")
    got = tracker.download_artifact(tracker.run_id, "config.yaml", tmp_path / "down")
    assert got.read_text() == "epochs: 3\n"
    assert got.parent == tmp_path / "down"
    with pytest.raises(SamexpError, match=r"no artifact checkpoints/last\.pt") as caught:
        tracker.download_artifact(tracker.run_id, "checkpoints/last.pt", tmp_path / "down")
    assert "\n" not in str(caught.value)


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
@KILLED_STORE
def test_a_killed_process_s_run_is_reconciled_as_interrupted_with_its_resume_command(
    tmp_path: Path, killed_run: str
):
    tracker = _tracker(tmp_path)
    assert tracker.reconcile_stale_runs() == [killed_run]
    run = _client(tracker).get_run(killed_run)
    assert run.info.status == "KILLED"
    assert run.data.tags["samexp.state"] == "INTERRUPTED"
    note = run.data.tags["samexp.interrupted"]
    assert note.startswith(f"process gone (pid {run.data.tags['samexp.pid']} on host ")
    assert "last heartbeat 20" in note
    assert note.endswith(
        f"; resume with: python -m samexp trainer.epochs=3 trainer.resume={killed_run}"
    )
    assert tracker.reconcile_stale_runs() == []  # once is enough
    assert tracker.find_resumable() == killed_run


@pytest.mark.parametrize(
    ("per_node", "launch"), [(None, "python"), ("2", "torchrun --nproc_per_node=2")]
)
def test_a_stale_runs_resume_command_launches_it_as_it_was_launched(monkeypatch, per_node, launch):
    """A torchrun job whose rank 0 was SIGKILLed is found stale by the next run: its note must
    say torchrun, as the job's own interrupted message does."""
    if per_node is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", per_node)  # what torchrun sets in every rank
    tags = {**liveness_tags(), "overrides": "trainer.epochs=3"}
    assert interrupted_note("process gone", tags, "abc") == (
        f"process gone; resume with: {launch} -m samexp trainer.epochs=3 trainer.resume=abc"
    )


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
@KILLED_STORE
def test_starting_a_run_reconciles_stale_runs_but_never_a_live_process_s(
    tmp_path: Path, killed_run: str, caplog
):
    caplog.set_level(logging.INFO, logger="samexp.tracking.tracker")
    tracker = _tracker(tmp_path)
    client = _client(tracker)
    experiment = client.get_experiment_by_name("e").experiment_id
    # a run of another live process on this host (pytest's parent), heartbeat fresh
    alive = client.create_run(
        experiment, tags={**liveness_tags(), "samexp.pid": str(os.getppid())}
    ).info.run_id
    with tracker.start_run("mine", params={}, tags={}):
        assert client.get_run(killed_run).info.status == "KILLED"
        assert _tracker(tmp_path).reconcile_stale_runs() == []
        assert client.get_run(tracker.run_id).info.status == "RUNNING"
        assert client.get_run(alive).info.status == "RUNNING"
    assert [r.getMessage() for r in caplog.records if killed_run in r.getMessage()] == [
        f"MLflow run {killed_run} marked KILLED: "
        + client.get_run(killed_run).data.tags["samexp.interrupted"]
    ]


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
@KILLED_STORE
def test_resuming_a_killed_process_s_run_reopens_it_without_reconciling_it(
    tmp_path: Path, killed_run: str
):
    tracker = _tracker(tmp_path)
    with tracker.start_run("r", params={}, tags={}, resume_run_id=killed_run):
        tags = _client(tracker).get_run(killed_run).data.tags
        assert tags["samexp.pid"] == str(os.getpid())
        assert "samexp.interrupted" not in tags
        assert tags["samexp.resumptions"] == "1"
    assert _client(tracker).get_run(killed_run).info.status == "FINISHED"


def test_a_run_silent_for_longer_than_stale_after_s_is_stale_on_any_host(tmp_path: Path):
    tracker = _tracker(tmp_path, stale_after_s=60)
    client = tracker.client()
    experiment = client.get_experiment_by_name("e").experiment_id
    elsewhere = {"samexp.host": "another-node", "samexp.pid": "1"}
    silent = client.create_run(
        experiment, tags={**elsewhere, "samexp.heartbeat": f"{time.time() - 120:.0f}"}
    ).info.run_id
    recent = client.create_run(
        experiment, tags={**elsewhere, "samexp.heartbeat": f"{time.time() - 10:.0f}"}
    ).info.run_id
    untagged = client.create_run(experiment).info.run_id  # e.g. a sweep's parent run
    assert tracker.reconcile_stale_runs() == [silent]
    assert client.get_run(silent).data.tags["samexp.interrupted"].startswith("no heartbeat for")
    assert client.get_run(recent).info.status == "RUNNING"
    assert client.get_run(untagged).info.status == "RUNNING"


def test_find_resumable_is_the_newest_interrupted_run_or_none(tmp_path: Path):
    tracker = _tracker(tmp_path)
    assert tracker.find_resumable() is None
    ids = []
    for error in (KeyboardInterrupt(), KeyboardInterrupt(), ValueError("not resumable")):
        t = _tracker(tmp_path)
        with contextlib.suppress(BaseException), t.start_run("r", params={}, tags={}):
            raise error
        ids.append(t.run_id)
        time.sleep(0.01)  # start times are in milliseconds
    assert tracker.find_resumable() == ids[1]
