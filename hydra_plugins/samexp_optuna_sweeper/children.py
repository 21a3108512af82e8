"""Make each trial's MLflow child run show the trial's final Optuna state, whichever worker ends
the trial: the one that ran it, or another that found its worker dead. Only when the sweep has an
MLflow parent run ($SAMEXP_PARENT_RUN_ID, exported by samexp's sweep callback).

The study is the record and MLflow the view: a child that cannot be updated is logged, never
fatal. MLflow is imported here only, so Hydra's plugin scan stays light.
"""

from __future__ import annotations

import functools
import logging
import os

from optuna.trial import FrozenTrial

from .workers import ERROR, SURPLUS, outcome

log = logging.getLogger(__name__)

PARENT_ENV = "SAMEXP_PARENT_RUN_ID"
URI_ENV = "SAMEXP_TRACKING_URI"
# samexp.state -> the MLflow status of a child in that state (samexp's Tracker uses the same)
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED", "INTERRUPTED": "KILLED"}


def mirror(study_name: str, trial: FrozenTrial) -> None:
    """Tag the trial's child with its number, study and final state (`optuna.state`,
    `samexp.state`) and end it with the matching status. A trial cut off before its job opened
    a run gets a stub child, so the parent lists every trial that was started."""
    parent_id = os.environ.get(PARENT_ENV)
    if not parent_id or SURPLUS in trial.user_attrs or not trial.state.is_finished():
        return
    try:
        _mirror(_client(os.environ.get(URI_ENV)), parent_id, study_name, trial)
    except Exception:
        log.warning("could not update the MLflow run of trial %d", trial.number, exc_info=True)


def _mirror(client, parent_id: str, study_name: str, trial: FrozenTrial) -> None:
    from mlflow.entities import RunTag

    state = outcome(trial)
    run = child_of(client, parent_id, trial.number) or _stub(client, parent_id, trial.number)
    tags = {
        "samexp.state": state,
        "optuna.state": trial.state.name,
        "optuna.trial_number": str(trial.number),
        "optuna.study_name": study_name,
    }
    if state == "FAILED" and "samexp.error" not in run.data.tags:
        tags["samexp.error"] = str(trial.user_attrs[ERROR])[:5000]
    client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    if run.info.status != STATUS[state]:
        client.set_terminated(run.info.run_id, STATUS[state])


def child_of(client, parent_id: str, number: int):
    """The parent's child for this trial: tagged with its number, or named `...#t<number>`
    (samexp's runner names a trial's run so)."""
    experiment_id = client.get_run(parent_id).info.experiment_id
    under = f"tags.mlflow.parentRunId = '{parent_id}'"
    for extra in (f"tags.`optuna.trial_number` = '{number}'", f"attributes.run_name LIKE '%#t{number}'"):  # fmt: skip
        found = client.search_runs([experiment_id], f"{under} AND {extra}", max_results=1)
        if found:
            return found[0]
    return None


def _stub(client, parent_id: str, number: int):
    experiment_id = client.get_run(parent_id).info.experiment_id
    return client.create_run(
        experiment_id, run_name=f"trial#t{number}", tags={"mlflow.parentRunId": parent_id}
    )


@functools.lru_cache(maxsize=4)
def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)
