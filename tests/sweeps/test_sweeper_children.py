"""Each Optuna trial's MLflow child shows the trial's final state, whichever worker ended it; the
workers of one study share one parent run, and its per-state counts are the latest worker's."""

from __future__ import annotations

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydra_plugins.samexp_optuna_sweeper.children import mirror
from hydra_plugins.samexp_optuna_sweeper.workers import ERROR, SURPLUS
from samexp.sweeps.callback import summarize
from samexp.tracking.names import SWEEP_KEY as KEY_TAG
from samexp.tracking.sweep_parent import Parent, find_or_create_parent


def child(client: MlflowClient, experiment: str, parent: str, number: int) -> str:
    """A trial's run as samexp's runner opens it: nested, named `...#t<number>`, RUNNING."""
    tags = {"mlflow.parentRunId": parent}
    return client.create_run(experiment, run_name=f"lora-r4-rings-tiny#t{number}", tags=tags).info.run_id  # fmt: skip


def ended(state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    study = optuna.create_study()
    for _ in range(3):  # trial number 3, so a lookup by number is tested, not the first run
        study.tell(study.ask(), 0.0)
    trial = study.ask()
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def test_the_open_run_of_a_trial_failed_as_stale_ends_killed_tagged_interrupted(store):
    client, experiment, parent = store
    mine, other = child(client, experiment, parent, 3), child(client, experiment, parent, 13)
    mirror("study", ended(TrialState.FAIL))
    run = client.get_run(mine)
    assert run.info.status == "KILLED"
    assert {
        k: run.data.tags[k] for k in ("samexp.state", "optuna.state", "optuna.trial_number")
    } == {
        "samexp.state": "INTERRUPTED",
        "optuna.state": "FAIL",
        "optuna.trial_number": "3",
    }
    assert client.get_run(other).info.status == "RUNNING", "#t13 is another trial"


def test_a_trial_cut_off_before_its_run_opened_gets_a_stub_child(store):
    client, experiment, parent = store
    mirror("study", ended(TrialState.FAIL))
    (stub,) = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert stub.info.status == "KILLED" and stub.data.tags["samexp.state"] == "INTERRUPTED"
    assert stub.info.run_name == "trial#t3"


def test_a_run_that_finished_but_whose_trial_failed_shows_the_failure(store):
    client, experiment, parent = store
    run_id = child(client, experiment, parent, 3)
    client.set_tag(run_id, "samexp.state", "COMPLETE")
    client.set_terminated(run_id, "FINISHED")
    mirror("study", ended(TrialState.FAIL, **{ERROR: "returned nan, not a number"}))
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["samexp.state"]) == ("FAILED", "FAILED")
    assert run.data.tags["samexp.error"] == "returned nan, not a number"


def test_complete_and_pruned_trials_keep_their_runs_state_and_gain_the_optuna_tags(store):
    client, experiment, parent = store
    run_id = child(client, experiment, parent, 3)
    client.set_terminated(run_id, "KILLED")
    mirror("study", ended(TrialState.PRUNED))
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["samexp.state"]) == ("KILLED", "PRUNED")
    assert run.data.tags["optuna.state"] == "PRUNED"


def test_a_surplus_trial_never_ran_and_gets_no_child(store):
    client, experiment, parent = store
    mirror("study", ended(TrialState.FAIL, **{SURPLUS: True}))
    assert not client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")


class LooksMissIt:
    """A store in which another worker's parent, started first, is not visible at the first
    `misses` looks (two workers racing on a server, where there is no lock: its create request
    lands after this worker's)."""

    def __init__(self, client: MlflowClient, misses: int = 1) -> None:
        self.client, self.looks, self.misses = client, 0, misses

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def search_runs(self, *args, **kwargs):
        self.looks += 1
        found = self.client.search_runs(*args, **kwargs)
        return [r for r in found if r.info.start_time != 1] if self.looks <= self.misses else found


def test_a_worker_that_opened_a_second_parent_keeps_the_older_one_and_deletes_its_own(store):
    client, experiment, _ = store
    key = "study:s"
    first = client.create_run(experiment, start_time=1, tags={KEY_TAG: key}).info.run_id
    assert find_or_create_parent(LooksMissIt(client), experiment, key) == first
    active = client.search_runs([experiment], f"tags.`{KEY_TAG}` = '{key}'")
    assert [r.info.run_id for r in active] == [first]


def test_a_worker_waits_for_an_older_parent_whose_create_lands_after_its_own(store):
    client, experiment, _ = store
    key = "study:late"
    first = client.create_run(experiment, start_time=1, tags={KEY_TAG: key}).info.run_id
    late = LooksMissIt(client, misses=3)  # not there at the first look, nor just after my create
    assert find_or_create_parent(late, experiment, key, settle_s=0.05) == first
    active = client.search_runs([experiment], f"tags.`{KEY_TAG}` = '{key}'")
    assert [r.info.run_id for r in active] == [first]


def test_the_latest_summary_of_a_parent_replaces_every_count(store):
    client, experiment, parent = store
    run_id = child(client, experiment, parent, 0)
    assert summarize(Parent(client, parent), "best/val/iou")["RUNNING"] == 1
    client.set_tag(run_id, "samexp.state", "COMPLETE")
    client.set_terminated(run_id, "FINISHED")
    summarize(Parent(client, parent), "best/val/iou")
    metrics = client.get_run(parent).data.metrics
    assert metrics["sweep/running"] == 0 and metrics["sweep/complete"] == 1


def ending(store, interrupted: str | None) -> str:
    from omegaconf import OmegaConf

    from samexp.sweeps.callback import MlflowSweepCallback

    client, _, parent = store
    callback = MlflowSweepCallback()
    callback.parent = Parent(client, parent)
    config = OmegaConf.create({"objective": "best/val/iou", "hydra": {"sweeper": {}}})
    callback.on_multirun_end(config, interrupted=interrupted)
    return client.get_run(parent).info.status


def test_a_sweep_that_reached_n_trials_finishes_its_parent(store):
    assert ending(store, interrupted=None) == "FINISHED"


def test_an_interrupted_sweep_leaves_its_parent_killed(store):
    assert ending(store, interrupted="SIGTERM") == "KILLED"


def test_an_interrupted_sweep_leaves_the_parent_running_while_another_worker_runs_a_trial(store):
    client, experiment, parent = store
    child(client, experiment, parent, 0)
    assert ending(store, interrupted="SIGTERM") == "RUNNING"
