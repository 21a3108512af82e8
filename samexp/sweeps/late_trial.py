"""A sweep trial's run resumed with the command its interruption printed, after the sweep has
already ended its Optuna trial.

An interrupted job's trial is told FAIL (interrupted) at once and its params queued to run
again (the sweeper's `retry_once`), so the sweep can go on without the job. The trial cannot
take reports any more: Optuna refuses to update a finished trial (`UpdateFinishedTrialError`),
which failed the resumed run after its first epoch. A resumed trial's run therefore reports to
no trial while it trains (it is not pruned: the pruner's verdict would be about a trial the study
has closed), and when it ends it gives the study its result, because that result is what the user
resumed it for and what the sampler should learn from:

- as the trial's queued retry, when it is still waiting: claimed (WAITING -> RUNNING, atomic in
  the storage, as `ask()` claims it) and filled with the params and the reports of both parts,
  so the sweep does not train the same point again;
- else (a sweep already took the retry, or the trial was itself a retry) as a new trial with the
  same params.

Either way the trial holds `resumed_from` = the interrupted trial's number and counts toward
`n_trials` like any result. The sweep's MLflow parent run shows it at its next summary (the next
time the sweep runs).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from samexp.sweeps.pruning import trial_id
from samexp.tracking.names import TRIAL_NUMBER, TRIAL_RESUMED_FROM, TRIAL_STATE

log = logging.getLogger(__name__)

RETRY_OF = "retry_of"  # a queued retry's attribute: the number of the trial it repeats
RESUMED_FROM = "resumed_from"  # the interrupted trial whose resumed run gave this result


class LateTrial:
    """The reporter of a run whose trial the sweep already ended: records what it reports and
    tells the study the result at the end (`finish`)."""

    def __init__(self, storage: optuna.storages.RDBStorage, study_name: str, before: FrozenTrial):
        self.storage, self.study_name, self.before = storage, study_name, before
        self.reported: dict[int, float] = {}
        log.info(
            "trial %d of study '%s' already ended (%s): this resumed run is not pruned, and "
            "gives the study its result when it ends",
            before.number, study_name, before.state.name,
        )  # fmt: skip

    def __call__(self, value: float, epoch: int) -> None:
        if not math.isnan(value):
            self.reported[epoch] = value

    def finish(self, value: float | None) -> dict[str, str]:
        """Tell the study the run's objective; returns the tags its MLflow run gets (the trial
        that now holds the result). A pruned or complete trial already has one: nothing told."""
        if self.before.state != TrialState.FAIL:
            return {}
        if value is None or math.isnan(value):
            log.warning(
                "trial %d resumed: the objective is %r, not a number; the study is not told",
                self.before.number, value,
            )  # fmt: skip
            return {}
        study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        number = self._as_retry(study, value)
        if number is None:
            number = self._as_new_trial(study, value)
        log.info(
            "study '%s': trial %d (params of interrupted trial %d) completed with %.4f",
            self.study_name, number, self.before.number, value,
        )  # fmt: skip
        return {TRIAL_NUMBER: str(number), TRIAL_STATE: "COMPLETE",
                TRIAL_RESUMED_FROM: str(self.before.number)}  # fmt: skip

    def _intermediate(self) -> dict[int, float]:
        return {**self.before.intermediate_values, **self.reported}

    def _as_retry(self, study: optuna.Study, value: float) -> int | None:
        """The queued retry of the interrupted trial, claimed and completed; None when no retry
        is waiting (or another process claimed it first)."""
        for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if waiting.user_attrs.get(RETRY_OF) != self.before.number:
                continue
            tid = trial_id(self.storage, self.study_name, waiting.number)
            try:
                if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    return None
            except optuna.exceptions.UpdateFinishedTrialError:
                return None
            for name, param in self.before.params.items():
                distribution = self.before.distributions[name]
                self.storage.set_trial_param(tid, name, distribution.to_internal_repr(param), distribution)  # fmt: skip
            for step, reported in self._intermediate().items():
                self.storage.set_trial_intermediate_value(tid, step, reported)
            self.storage.set_trial_user_attr(tid, RESUMED_FROM, self.before.number)
            study.tell(waiting.number, value)
            return waiting.number
        return None

    def _as_new_trial(self, study: optuna.Study, value: float) -> int:
        attrs: dict[str, Any] = {RESUMED_FROM: self.before.number}
        template = optuna.trial.create_trial(
            params=self.before.params, distributions=self.before.distributions, value=value,
            intermediate_values=self._intermediate(), user_attrs=attrs,
        )  # fmt: skip
        study_id = self.storage.get_study_id_from_name(self.study_name)
        tid = self.storage.create_new_trial(study_id, template_trial=template)
        return self.storage.get_trial_number_from_id(tid)
