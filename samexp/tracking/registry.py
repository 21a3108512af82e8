"""The MLflow Model Registry: a run's logged model registered under a name (a new version each
time), the best finished run of a study or experiment chosen by a metric, and the lines that
serve a registered version."""

from __future__ import annotations

import logging
import math

import mlflow

from samexp.config.errors import SamexpError
from samexp.tracking.finished_runs import FinishedRun, select
from samexp.tracking.names import REGISTERED
from samexp.tracking.store import client

log = logging.getLogger(__name__)


def register(name: str, model_uri: str, run_id: str, tracking_uri: str) -> int:
    """Register the model at `model_uri` (run `run_id`'s, `samexp.tracking.pyfunc.log_model`) as
    a new version of `name` (created if new); the run is tagged with `name:version` once the
    registry holds it. Returns the version."""
    store = client(tracking_uri)  # a team server's login, when the environment has none
    mlflow.set_tracking_uri(tracking_uri)
    try:
        version = mlflow.register_model(model_uri, name)
    except mlflow.exceptions.MlflowException as e:
        raise SamexpError(f"register={name}: the registry of {tracking_uri} refused run "
                          f"{run_id}'s model ({e.message.splitlines()[0]})") from None  # fmt: skip
    store.set_tag(run_id, REGISTERED, f"{name}:{version.version}")
    return int(version.version)


def best_run(tracking_uri: str, best_of: str, metric: str) -> FinishedRun:
    """The finished run with the highest `metric` among those `best_of` names (a sweep's or
    study's parent run, its id, or an experiment: `samexp.tracking.finished_runs.select`)."""
    runs = select(tracking_uri, best_of).runs
    scored = [r for r in runs if math.isfinite(r.metrics.get(metric, math.nan))]
    if not scored:
        raise SamexpError(f"best_of={best_of}: none of its {len(runs)} finished run(s) logged "
                          f"metric={metric} (e.g. final/test/iou, final/test/dice)")  # fmt: skip
    best = max(scored, key=lambda r: r.metrics[metric])
    log.info("best of %s by %s: run %s (%s) with %.4f, of %d run(s)", best_of, metric,
             best.name, best.run_id, best.metrics[metric], len(scored))  # fmt: skip
    return best


def serve_lines(name: str, version: int, tracking_uri: str, port: int = 5001) -> str:
    """The shell lines that serve version `version` of `name` on this machine."""
    return (f"MLFLOW_TRACKING_URI={tracking_uri} mlflow models serve -m models:/{name}/{version} "
            f"--env-manager local -h 127.0.0.1 -p {port}")  # fmt: skip
