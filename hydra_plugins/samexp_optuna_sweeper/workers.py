"""Several sweep processes ("workers") on one study: heartbeats that tell a live worker's trials
from a dead one's, one retry for a trial whose worker died or was interrupted, and the count that
stops every worker when the study holds exactly `n_trials` results.

Only public Optuna API: the sweeper builds the `RDBStorage` itself (so it holds the object whose
heartbeat methods it calls), and trial ids come from the storage's own lookups.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from samexp.server.client import use_credentials
from samexp.sweeps.late_trial import RETRY_OF

log = logging.getLogger(__name__)

# user attributes the sweeper writes on its trials
WORKER = "worker"  # host:pid of the sweep that runs the trial (set right after its first heartbeat)
ERROR = "error"  # the job failed on its own: a result, counted and never retried
INTERRUPTED = "interrupted"  # the signal that stopped the job: not a result, retried once
SURPLUS = "surplus"  # asked by two workers at once past n_trials: given back unrun
# RETRY_OF (the number of the trial this one repeats) is samexp.sweeps.late_trial's: a resumed
# trial's run claims its retry by it

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_storage(
    url: str, heartbeat_interval: int, grace_period: int, on_stale: StaleCallback
) -> optuna.storages.RDBStorage:
    """An RDB storage whose RUNNING trials are failed (and handed to `on_stale`) by any worker
    once their heartbeat is `grace_period` seconds old."""
    use_credentials()  # a team server's password: from its credentials file, never the URL
    # Optuna 4.9 renamed the callback argument; 4.0 .. 4.8 only know the old name
    names = inspect.signature(optuna.storages.RDBStorage).parameters
    key = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in names
        else "failed_trial_callback"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, **{key: on_stale}
        )


def is_result(trial: FrozenTrial) -> bool:
    """Complete, pruned, or failed by the job itself (a diverging run fails again if rerun).
    A FAIL without ERROR was cut off (worker died, signal, surplus): it counts for nothing."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and ERROR in trial.user_attrs
    )


def outcome(trial: FrozenTrial) -> str:
    """The trial's end in samexp's words (MLflow's `samexp.state`): COMPLETE, PRUNED, FAILED
    (the job's own error) or INTERRUPTED (its worker died or a signal stopped it)."""
    if trial.state == TrialState.FAIL:
        return "FAILED" if ERROR in trial.user_attrs else "INTERRUPTED"
    return trial.state.name


@dataclass(frozen=True)
class Progress:
    done: int  # trials with a result (is_result)
    running: int  # RUNNING trials of every worker, this one included

    def free(self, n_trials: int) -> int:
        """Trials this worker may still ask for without the study passing n_trials."""
        return n_trials - self.done - self.running


def progress(study: optuna.Study) -> Progress:
    trials = study.get_trials(deepcopy=False)
    return Progress(
        done=sum(map(is_result, trials)),
        running=sum(t.state == TrialState.RUNNING for t in trials),
    )


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Two workers that ask at the same moment can both see one free slot. Trial numbers order
    them: a trial is surplus when the trials numbered before it, with a result or still running,
    already make n_trials. The earlier asker never counts the later one, so exactly one runs."""
    ahead = sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.number < number and (is_result(t) or t.state == TrialState.RUNNING)
    )
    return ahead >= n_trials


def retry_once(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue the trial's params again (ask() runs WAITING trials first); a retry that is cut off
    too is not retried again: the study then asks the sampler for a new point instead."""
    if RETRY_OF in trial.user_attrs:
        log.warning(
            "trial %d (a retry of trial %d) was cut off too: not retried again",
            trial.number,
            trial.user_attrs[RETRY_OF],
        )
        return
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
    log.warning("trial %d was cut off: its params are queued to run once more", trial.number)


def give_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Close a surplus trial unrun; a retry it had popped from the queue goes back there."""
    trial.set_user_attr(SURPLUS, True)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    retry_of = trial.user_attrs.get(RETRY_OF)
    if retry_of is not None:
        study.enqueue_trial(trial.params, user_attrs={RETRY_OF: retry_of})
    log.info("trial %d given back unrun: other workers already fill n_trials", trial.number)


def reap(study: optuna.Study, grace_period: int, on_stale: StaleCallback) -> None:
    """Fail the trials no live worker runs, each exactly once across workers, and hand each to
    `on_stale`: those whose heartbeat stopped (Optuna's `fail_stale_trials`), and RUNNING trials
    that never had a heartbeat (no WORKER attribute: left by a sweeper without heartbeats) once
    they are older than the grace period. A live worker's trials are left alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER in t.user_attrs or t.datetime_start is None:
            continue
        if (now - t.datetime_start).total_seconds() <= grace_period:
            continue
        try:  # no skip_if_finished: whoever's tell lands first runs on_stale, the other skips
            failed = study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):
            continue
        log.warning("trial %d was left RUNNING without a heartbeat: marked failed", t.number)
        on_stale(study, failed)


class Heartbeat:
    """Records a heartbeat for each trial every `interval` seconds in a daemon thread, for as long
    as the `with` block runs: the jobs may run in this process or another, the sweep stands for
    them. A failed write (a locked SQLite file) is logged and retried at the next beat; a trial
    is only failed after `grace_period` seconds without one."""

    def __init__(
        self, storage: optuna.storages.RDBStorage, trial_ids: Iterable[int], interval: int
    ) -> None:
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)

    def beat(self) -> None:
        for trial_id in self.trial_ids:
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as e:  # the next beat tries again
                log.warning("heartbeat of trial id %d not recorded: %s", trial_id, e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
