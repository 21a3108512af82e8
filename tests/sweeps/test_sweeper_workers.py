"""Several sweep workers on one study: what counts toward n_trials, who runs the last free slot,
which trials are failed as dead (only those whose worker stopped beating) and that each is run
again once. In process on real Optuna studies; the heartbeat ones wait out a 1 s grace period."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from hydra_plugins.samexp_optuna_sweeper.workers import (
    ERROR,
    INTERRUPTED,
    RETRY_OF,
    SURPLUS,
    WORKER,
    Heartbeat,
    give_back,
    is_result,
    is_surplus,
    open_storage,
    outcome,
    progress,
    reap,
    retry_once,
)
from samexp.sweeps.pruning import trial_id

SPACE = {"x": FloatDistribution(0, 1)}
# the sweep beats for ask()ed trials itself, as these tests do
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


def finish(study: optuna.Study, state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    trial = study.ask(SPACE)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)


def test_n_trials_counts_complete_pruned_and_own_errors_not_cut_off_trials():
    study = optuna.create_study()
    kept = [
        finish(study, TrialState.COMPLETE),
        finish(study, TrialState.PRUNED),
        finish(study, TrialState.FAIL, **{ERROR: "TrainingDiverged: nan"}),
    ]
    cut_off = [
        finish(study, TrialState.FAIL, **{INTERRUPTED: "SIGTERM"}),
        finish(study, TrialState.FAIL),  # failed as stale by another worker
        finish(study, TrialState.FAIL, **{SURPLUS: True}),
    ]
    study.ask(SPACE)
    assert progress(study).done == 3 and progress(study).running == 1
    assert progress(study).free(n_trials=6) == 2
    assert [outcome(t) for t in kept + cut_off[:2]] == [
        "COMPLETE",
        "PRUNED",
        "FAILED",
        "INTERRUPTED",
        "INTERRUPTED",
    ]


def test_of_two_workers_asking_for_the_last_slot_at_once_only_the_earlier_trial_runs():
    study = optuna.create_study()
    finish(study, TrialState.COMPLETE)
    first, second = study.ask(SPACE), study.ask(SPACE)  # both saw one free slot of n_trials=2
    assert not is_surplus(study, first.number, n_trials=2)
    assert is_surplus(study, second.number, n_trials=2)
    give_back(study, second)
    assert study.trials[second.number].state == TrialState.FAIL
    assert progress(study).done + progress(study).running == 2


def test_a_surplus_retry_goes_back_to_the_queue():
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.25}, user_attrs={RETRY_OF: 7})
    popped = study.ask(SPACE)
    give_back(study, popped)
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs == {RETRY_OF: 7}
    assert study.ask(SPACE).params == {"x": 0.25}


def test_a_cut_off_trial_is_queued_again_once_and_its_retry_never():
    study = optuna.create_study()
    original = finish(study, TrialState.FAIL, **{INTERRUPTED: "SIGINT"})
    retry_once(study, original)
    retry = study.ask(SPACE)
    assert retry.params == original.params and retry.user_attrs[RETRY_OF] == original.number
    cut_again = study.tell(retry, state=TrialState.FAIL)
    retry_once(study, cut_again)
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.fixture(scope="module")
def reaped(tmp_path_factory) -> dict:
    """Three RUNNING trials, 2.5 s later (grace period 1 s): one whose worker beats, one whose
    worker beat once and died, one from a sweeper without heartbeats (no WORKER attribute)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reap') / 'optuna.db'}"
    stale: list[int] = []
    storage = open_storage(url, 1, 1, lambda study, trial: stale.append(trial.number))
    study = optuna.create_study(study_name="s", storage=storage)
    live, dead, orphan = (study.ask(SPACE) for _ in range(3))
    for trial in (live, dead):
        storage.record_heartbeat(trial_id(storage, "s", trial.number))
        trial.set_user_attr(WORKER, f"host:{trial.number}")
    with Heartbeat(storage, [trial_id(storage, "s", live.number)], interval=1):
        reap(study, 1, lambda study, trial: stale.append(trial.number))
        assert stale == [], "nothing is failed before its grace period"
        time.sleep(2.5)
        reap(study, 1, lambda study, trial: stale.append(trial.number))
    return {"study": study, "stale": stale, "live": live, "dead": dead, "orphan": orphan}


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_a_trial_whose_worker_still_beats_is_left_running(reaped):
    assert reaped["study"].trials[reaped["live"].number].state == TrialState.RUNNING


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_a_trial_whose_worker_stopped_beating_is_failed_once(reaped):
    assert reaped["study"].trials[reaped["dead"].number].state == TrialState.FAIL
    assert reaped["stale"].count(reaped["dead"].number) == 1


def test_a_trial_that_never_had_a_heartbeat_is_failed_after_the_grace_period(reaped):
    assert reaped["study"].trials[reaped["orphan"].number].state == TrialState.FAIL
    assert reaped["stale"].count(reaped["orphan"].number) == 1


def test_a_job_reports_to_its_trial_by_number_through_a_storage_without_heartbeats(tmp_path):
    """Jobs get the storage URL, study name and trial number; the sweep beats for them."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = open_storage(url, 1, 2, lambda study, trial: None)
    study = optuna.create_study(study_name="s", storage=storage)
    number = study.ask(SPACE).number
    from samexp.sweeps.pruning import reporter_from_config

    report = reporter_from_config(url, "s", number, {"_target_": "optuna.pruners.NopPruner"})
    report(0.5, 1)
    assert study.trials[number].intermediate_values == {1: 0.5}


def job_return(value=None, error: BaseException | None = None):
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn()
    ret.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    ret._return_value = error if error else value
    return ret


def test_a_result_for_a_trial_another_worker_failed_as_stale_is_dropped_not_a_crash():
    from hydra_plugins.samexp_optuna_sweeper.outcomes import tell

    study = optuna.create_study()
    trial = study.ask(SPACE)
    study.tell(
        trial.number, state=TrialState.FAIL
    )  # the other worker, which took this one for dead
    final, stop = tell(study, trial, job_return(0.7))  # was "Cannot tell a FAIL trial"
    assert final.state == TrialState.FAIL and final.value is None and stop is None


def test_an_interrupted_job_fails_its_trial_with_the_signal_and_queues_it_once():
    from hydra_plugins.samexp_optuna_sweeper.outcomes import tell
    from samexp.config.errors import Interrupted

    study = optuna.create_study()
    trial = study.ask(SPACE)
    signal = Interrupted("SIGTERM", 143, "epoch 2 step 5", "rerun")
    final, stop = tell(study, trial, job_return(error=signal))
    assert stop is signal
    assert final.state == TrialState.FAIL and final.user_attrs[INTERRUPTED] == "SIGTERM"
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    assert queued.user_attrs == {RETRY_OF: trial.number}
    assert not is_result(final)


def test_a_job_that_fails_on_its_own_is_a_result_never_retried():
    from hydra_plugins.samexp_optuna_sweeper.outcomes import tell

    study = optuna.create_study()
    final, stop = tell(study, study.ask(SPACE), job_return(error=RuntimeError("diverged")))
    assert final.user_attrs[ERROR] == "RuntimeError: diverged" and is_result(final)
    assert stop is None and not study.get_trials(states=(TrialState.WAITING,))
