"""One MLflow parent run per sweep (grid or Optuna study), each job a nested child run.

A Hydra callback, so it works with every sweeper and launcher: before the sweep it creates (or,
for a resumed study, reopens) the parent run and exports its id; every job's Tracker nests under
it. After the sweep it writes the trial table, the best trial's params/metric and a plot of the
objective against each swept parameter onto the parent.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from samexp.tracking.store_lock import sqlite_path, store_lock
from samexp.tracking.tracker import PARENT_ENV

log = logging.getLogger(__name__)

URI_ENV = "SAMEXP_TRACKING_URI"
KEY_TAG = "samexp.sweep_key"
# a child's `samexp.state` (RUNNING: not ended yet); an Optuna trial's child shows its trial's
STATES = ("COMPLETE", "PRUNED", "FAILED", "INTERRUPTED", "RUNNING")
# a server store has no lock: workers creating the parent at once list until this still (s)
SETTLE_S = 2.0


def sweep_key(config: DictConfig) -> str:
    """An Optuna study is one sweep however often it is resumed; a grid is one per sweep folder."""
    sweeper = config.hydra.sweeper
    if "study_name" in sweeper and sweeper.study_name:
        return f"study:{sweeper.study_name}"
    return f"grid:{config.hydra.sweep.dir}"


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.client = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = config.tracking
        if not tracking.enabled:
            return
        from mlflow.tracking import MlflowClient

        tracker = instantiate(tracking)
        import mlflow

        tracker.connect(mlflow)  # creates the store and experiment before jobs race to
        self.client = MlflowClient(tracking_uri=tracking.tracking_uri)
        experiment = self.client.get_experiment_by_name(tracking.experiment)
        # workers of one study that start together: one creates the parent, the others find it
        # (the store's lock file, on SQLite); a server has no lock, see find_or_create_parent
        with store_lock(tracking.tracking_uri):
            self.parent_id = find_or_create_parent(
                self.client, experiment.experiment_id, sweep_key(config),
                settle_s=0.0 if sqlite_path(tracking.tracking_uri) else SETTLE_S,
            )  # fmt: skip
        os.environ[PARENT_ENV] = self.parent_id
        os.environ[URI_ENV] = tracking.tracking_uri

    def on_multirun_end(
        self, config: DictConfig, interrupted: str | None = None, **kwargs: Any
    ) -> None:
        """FINISHED; after an interrupted job (the sweeper passes `interrupted`) KILLED, unless
        another worker still runs a trial of this sweep: then it stays RUNNING for that one."""
        if self.parent_id is None:
            return
        status = "FINISHED"
        try:
            summary = summarize(self.client, self.parent_id, config.objective, mode_of(config))
            if interrupted:
                status = "RUNNING" if summary.get("RUNNING") else "KILLED"
        finally:
            if status != "RUNNING":
                self.client.set_terminated(self.parent_id, status)
            os.environ.pop(PARENT_ENV, None)


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
    mine = client.create_run(experiment_id, run_name=name, tags={KEY_TAG: key}).info.run_id
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
        [experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=100
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def mode_of(config: DictConfig) -> str:
    direction = config.hydra.sweeper.get("direction", "maximize")
    return "min" if str(direction).startswith("min") else "max"


def summarize(client, parent_id: str, objective: str, mode: str = "max") -> dict[str, int]:
    """Trial table (CSV), best child's params and objective, objective-vs-parameter plots, and
    the children per state (`sweep/complete`, ...), which it returns."""
    import pandas as pd

    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        max_results=10_000,
    )
    rows = []
    for run in children:
        overrides = dict(
            o.split("=", 1) for o in run.data.tags.get("overrides", "").split() if "=" in o
        )
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name,
            "state": run.data.tags.get("samexp.state", run.info.status),
            **{f"param.{k}": v for k, v in overrides.items() if not k.startswith(("optuna.", "tracking.", "hydra"))},
            objective: run.data.metrics.get(objective),
        })  # fmt: skip
    if not rows:
        log.warning("sweep parent %s has no child runs", parent_id)
        return {}
    table = pd.DataFrame(rows)
    done = table[table["state"] == "COMPLETE"].dropna(subset=[objective])
    # the swept parameters are the overrides that differ between trials; the rest is context
    # (the stub child of a trial cut off before its job opened a run has none: left out)
    params = table[[c for c in table.columns if c.startswith("param.")]]
    launched = params[params.notna().any(axis=1)]
    swept = [c for c in launched.columns if launched[c].nunique(dropna=False) > 1]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        table.to_csv(csv, index=False)
        client.log_artifact(parent_id, str(csv), "sweep")
        for column in swept:
            png = _plot(done, column, objective, Path(tmp))
            if png is not None:
                client.log_artifact(parent_id, str(png), "sweep")
    # every state, zeros included: workers of one study each summarize, and the last one's
    # counts must replace the earlier ones entirely
    counts = {**dict.fromkeys(STATES, 0), **table["state"].value_counts().to_dict()}
    for state, n in counts.items():
        client.log_metric(parent_id, f"sweep/{str(state).lower()}", n)
    if done.empty:
        return counts
    best = done.loc[done[objective].idxmax() if mode == "max" else done[objective].idxmin()]
    client.log_metric(parent_id, objective, float(best[objective]))  # the best trial's value
    client.set_tag(parent_id, "best_run_id", best["run_id"])
    for column in swept:
        client.log_param(parent_id, f"best.{column[6:]}", best[column])
    log.info("sweep best: %s = %.4f (%s)", objective, best[objective], best["run_name"])
    return counts


def _plot(table, column: str, objective: str, folder: Path) -> Path | None:
    """Objective against one swept parameter, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    scatter_against(ax, table[column], table[objective], column[6:], objective)
    ax.set_title(f"{objective} vs {column[6:]}")
    fig.tight_layout()
    path = folder / f"{objective.replace('/', '_')}_vs_{column[6:]}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_against(ax, values: Sequence, objective: Sequence, name: str, label: str) -> None:
    """`objective` against one parameter's values: numbers on a numeric axis (log base 2 for
    powers of two such as LoRA ranks, base 10 over two decades), even where Optuna keeps them as
    the choices of a categorical (matplotlib would take number-like strings for categories and
    say so on every sweep); anything else as categories."""
    import pandas as pd

    x = pd.to_numeric(pd.Series(list(values)), errors="coerce")
    if x.notna().all():
        ax.scatter(x, list(objective))
        powers = set(x) <= {2.0**k for k in range(12)}
        if x.min() > 0 and x.max() / x.min() >= 100 or powers:
            ax.set_xscale("log", base=2 if powers else 10)
    else:
        ax.scatter([str(v) for v in values], list(objective))
    ax.set_xlabel(name)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
