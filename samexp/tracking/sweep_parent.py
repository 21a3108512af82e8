"""A sweep in MLflow: one parent run per sweep (a grid, or an Optuna study however often it is
resumed), each trial a nested child. The sweep callback opens and closes the parent and writes
its summary, the sweeper mirrors each trial's final state onto its child; both through here."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from samexp.tracking import store
from samexp.tracking.names import (
    ERROR,
    OVERRIDES,
    PARENT,
    PARENT_ENV,
    STATE,
    SWEEP_KEY,
    TRIAL_NUMBER,
    URI_ENV,
)
from samexp.tracking.store_lock import sqlite_path, store_lock

log = logging.getLogger(__name__)

# a server store has no lock: workers creating the parent at once list until this still (s)
SETTLE_S = 2.0


class Parent(NamedTuple):
    """The sweep's parent run and the client of its store."""

    client: Any
    run_id: str


def open_parent(tracker, key: str) -> Parent:
    """Create (or, for a resumed study, reopen) the parent of the sweep `key` in the tracker's
    store and experiment, and export it so that every job's Tracker nests under it."""
    client = tracker.client()  # creates the store and experiment before jobs race to
    experiment = client.get_experiment_by_name(tracker.experiment)
    # workers of one study that start together: one creates the parent, the others find it
    # (the store's lock file, on SQLite); a server has no lock, see find_or_create_parent
    with store_lock(tracker.tracking_uri):
        run_id = find_or_create_parent(
            client, experiment.experiment_id, key,
            settle_s=0.0 if sqlite_path(tracker.tracking_uri) else SETTLE_S,
        )  # fmt: skip
    os.environ[PARENT_ENV] = run_id
    os.environ[URI_ENV] = tracker.tracking_uri
    return Parent(client, run_id)


def close_parent(parent: Parent, status: str) -> None:
    """End the parent as `status` (RUNNING: left open, another worker still runs a trial) and
    stop exporting it."""
    try:
        if status != "RUNNING":
            parent.client.set_terminated(parent.run_id, status)
    finally:
        os.environ.pop(PARENT_ENV, None)


def exported() -> Parent | None:
    """The parent the sweep callback exported to this process's jobs, if any."""
    run_id = os.environ.get(PARENT_ENV)
    return Parent(store.client(os.environ.get(URI_ENV)), run_id) if run_id else None


def find_or_create_parent(client, experiment_id: str, key: str, settle_s: float = 0.0) -> str:
    """The sweep's parent run: the oldest active run tagged with its key, reopened, or a new one.
    Two workers racing here without a lock (a server store) may both create one; each then
    keeps the oldest and deletes its own, so both nest their trials under the same parent.

    "Oldest" is by the start time each worker's clock gave its run, but a run is seen only once
    its request has landed: a worker whose create landed first, listing at once, may not yet see
    an older one still in flight and keep its own while the other keeps the older (two parents,
    seen in CI). With `settle_s` a worker lists until the listing has not changed for that long,
    so both decide on the same list."""
    found = _parents(client, experiment_id, key)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        log.info("resuming sweep parent run %s (%s)", found[0].info.run_id, key)
        return found[0].info.run_id
    name = key.split(":", 1)[1] if key.startswith("study:") else f"sweep-{Path(key[6:]).name}"
    mine = client.create_run(experiment_id, run_name=name, tags={SWEEP_KEY: key}).info.run_id
    oldest = _settled(client, experiment_id, key, settle_s)[0].info.run_id
    if oldest != mine:
        client.delete_run(mine)
        log.info("another worker opened sweep parent run %s (%s) first", oldest, key)
    else:
        log.info("sweep parent run %s (%s)", mine, key)
    return oldest


def _settled(client, experiment_id: str, key: str, settle_s: float) -> list:
    """The parents listed until the list holds still for `settle_s` (at most ten times that)."""
    listed = _parents(client, experiment_id, key)
    deadline, still_since = time.monotonic() + 10 * settle_s, time.monotonic()
    while time.monotonic() - still_since < settle_s and time.monotonic() < deadline:
        time.sleep(settle_s / 4)
        again = _parents(client, experiment_id, key)
        if [r.info.run_id for r in again] != [r.info.run_id for r in listed]:
            listed, still_since = again, time.monotonic()
    return listed


def _parents(client, experiment_id: str, key: str) -> list:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{SWEEP_KEY}` = '{key}'", max_results=100
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def trials(parent: Parent, objective: str) -> list[dict[str, Any]]:
    """One row per child: run id and name, samexp's state (the MLflow status while it has none),
    its command-line overrides and its `objective` (None when it never logged one)."""
    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    children = parent.client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT}` = '{parent.run_id}'", max_results=10_000
    )
    return [
        {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "state": run.data.tags.get(STATE, run.info.status),
            "overrides": dict(
                o.split("=", 1) for o in run.data.tags.get(OVERRIDES, "").split() if "=" in o
            ),
            "objective": run.data.metrics.get(objective),
        }
        for run in children
    ]


def mirror_trial(
    parent: Parent, number: int, tags: dict[str, str], status: str, error: str | None = None
) -> None:
    """Tag trial `number`'s child (a stub child when its job never opened a run, so the parent
    lists every trial that was started) and end it as `status`. `error` becomes its error tag
    unless its run already said why it failed."""
    run = child_of(parent, number) or _stub(parent, number)
    if error is not None and ERROR not in run.data.tags:
        tags = {**tags, ERROR: error[:5000]}
    store.record(parent.client, run.info.run_id, tags=tags)
    if run.info.status != status:
        parent.client.set_terminated(run.info.run_id, status)


def child_of(parent: Parent, number: int):
    """The parent's child for this trial: tagged with its number, or named `...#t<number>`
    (samexp's runner names a trial's run so)."""
    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    under = f"tags.`{PARENT}` = '{parent.run_id}'"
    for extra in (f"tags.`{TRIAL_NUMBER}` = '{number}'", f"attributes.run_name LIKE '%#t{number}'"):  # fmt: skip
        found = parent.client.search_runs([experiment_id], f"{under} AND {extra}", max_results=1)
        if found:
            return found[0]
    return None


def _stub(parent: Parent, number: int):
    experiment_id = parent.client.get_run(parent.run_id).info.experiment_id
    return parent.client.create_run(
        experiment_id, run_name=f"trial#t{number}", tags={PARENT: parent.run_id}
    )
