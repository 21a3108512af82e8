"""An MLflow store read and written by run id, without an active run: what the demo, the sweep
callback, the sweeper and `predict`/`export` need from runs they did not open. Plain values go
in and out; MLflow's client and its errors stay here (MLflow is imported inside the functions,
so a command that never reads a store never pays for it)."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from samexp.config.errors import SamexpError
from samexp.tracking.names import PROGRESS_ENV, STATE
from samexp.tracking.store_lock import sqlite_path

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def client(tracking_uri: str | None):
    """MLflow's client of the store; a team server's login comes from its credentials file when
    the environment has none."""
    from mlflow.tracking import MlflowClient

    if tracking_uri and tracking_uri.startswith("http"):
        from samexp.server.client import use_credentials

        use_credentials()
    return MlflowClient(tracking_uri=tracking_uri)


def exists(tracking_uri: str) -> bool:
    """Whether there is a store to read: MLflow would create an empty SQLite file for a path that
    has none, so a wrong path would look like a store without runs."""
    if not tracking_uri.startswith("sqlite:"):
        return True  # a server or a database: asking it is the only way to know
    db = sqlite_path(tracking_uri)
    return db is not None and db.is_file()


def completed_runs(tracking_uri: str, limit: int) -> list:
    """Runs of every experiment that ended well (FINISHED, samexp's state COMPLETE), newest
    first: MLflow runs, read by attribute (`run.info`, `run.data`)."""
    from mlflow.exceptions import MlflowException

    store = client(tracking_uri)
    try:
        experiments = [e.experiment_id for e in store.search_experiments()]
        if not experiments:
            return []
        return list(store.search_runs(
            experiments,
            filter_string=f"attributes.status = 'FINISHED' and tags.`{STATE}` = 'COMPLETE'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        ))  # fmt: skip
    except MlflowException as e:
        raise SamexpError(f"cannot read the runs of {tracking_uri}: {e.message}") from None


def run_file(run_id: str, artifact: str, tracking_uri: str, missing: str = "") -> Path:
    """One artifact of MLflow run `run_id` as a local file. Run artifacts never change: one copy
    per run in the cache, not a temp folder per call. `missing` says why one may be absent."""
    from mlflow.exceptions import MlflowException

    from samexp.models.checkpoints import default_cache_dir, in_cache  # torch: only when needed

    store = client(tracking_uri)
    try:
        store.get_run(run_id)
    except MlflowException as e:
        raise SamexpError(
            f"run_id={run_id} is not a run in {tracking_uri} ({e.message.splitlines()[0]})"
        ) from None
    kept = default_cache_dir() / "runs" / run_id / artifact
    if kept.is_file():
        return kept
    kept.parent.mkdir(parents=True, exist_ok=True)
    # downloaded beside its place, then moved there: a download cut short never looks complete
    with tempfile.TemporaryDirectory(dir=kept.parent, prefix=".download-") as partial:
        try:
            local = store.download_artifacts(run_id, artifact, partial)
        except (MlflowException, OSError) as e:
            why = f" ({missing})" if missing else ""
            raise SamexpError(f"run {run_id} has no {artifact} artifact{why}: {e}") from None
        os.replace(local, kept)
    log.info("downloaded run %s's %s to %s", run_id, artifact, in_cache(kept))
    return kept


def record(
    store,
    run_id: str,
    *,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    files: Iterable[Path] = (),
    folder: str | None = None,
) -> None:
    """Files (into the run's `folder`), then params, tags and metrics (at step 0), onto a run
    that may belong to another process: nothing about the active run changes."""
    from mlflow.entities import Metric, Param, RunTag

    for path in files:
        store.log_artifact(run_id, str(path), folder)
    now = int(time.time() * 1000)
    store.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def end(store, run_id: str, status: str) -> None:
    """End a run as `status` (FINISHED, KILLED, FAILED) unless it already is."""
    if store.get_run(run_id).info.status != status:
        store.set_terminated(run_id, status)


def find_run(tracking_uri: str, run_id: str):
    """The run with this id, or None when the store has none (a name given where an id may be)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_run(run_id)
    except MlflowException:
        return None


def search(
    tracking_uri: str, filter_string: str = "", experiment_ids: list[str] | None = None
) -> list:
    """Every run matching `filter_string` (MLflow's search syntax) in these experiments (default:
    all), oldest first, page after page; a store that cannot be read is one line."""
    from mlflow.exceptions import MlflowException

    store = client(tracking_uri)
    try:
        ids = experiment_ids or [e.experiment_id for e in store.search_experiments()]
        runs, token = [], None
        while ids:
            page = store.search_runs(ids, filter_string=filter_string, max_results=1000,
                                     order_by=["attributes.start_time ASC"], page_token=token)  # fmt: skip
            runs.extend(page)
            token = page.token
            if not token:
                break
        return runs
    except MlflowException as e:
        raise SamexpError(f"cannot read the runs of {tracking_uri}: {e.message}") from None


def experiment_id(tracking_uri: str, name: str) -> str | None:
    """The id of the experiment called `name`, or None."""
    found = client(tracking_uri).get_experiment_by_name(name)
    return found.experiment_id if found is not None else None


def artifact_text(tracking_uri: str, run_id: str, artifact: str) -> str | None:
    """One small text artifact of a run, read through a temporary folder; None when it has none."""
    from mlflow.exceptions import MlflowException

    quiet = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "false"  # a bar per small file would drown a report's log
    try:
        with tempfile.TemporaryDirectory(prefix="samexp-artifact-") as tmp:
            local = client(tracking_uri).download_artifacts(run_id, artifact, tmp)
            return Path(local).read_text(encoding="utf-8")
    except (MlflowException, OSError):
        return None
    finally:
        if quiet is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = quiet
