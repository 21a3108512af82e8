"""Make each trial's MLflow child run show the trial's final Optuna state, whichever worker ends
the trial: the one that ran it, or another that found its worker dead. Only when the sweep has an
MLflow parent run (exported by samexp's sweep callback).

The study is the record and MLflow the view: a child that cannot be updated is logged, never
fatal. MLflow is reached through samexp.tracking.sweep_parent, which imports it only when a
child is written, so Hydra's plugin scan stays light.
"""

from __future__ import annotations

import logging

from optuna.trial import FrozenTrial

from samexp.tracking.names import STATE, STUDY_NAME, TRIAL_NUMBER, TRIAL_STATE
from samexp.tracking.states import STATUS
from samexp.tracking.sweep_parent import exported, mirror_trial

from .workers import ERROR, SURPLUS, outcome

log = logging.getLogger(__name__)


def mirror(study_name: str, trial: FrozenTrial) -> None:
    """Tag the trial's child with its number, study and final state (`optuna.state`,
    `samexp.state`) and end it with the matching status. A trial cut off before its job opened
    a run gets a stub child, so the parent lists every trial that was started."""
    if SURPLUS in trial.user_attrs or not trial.state.is_finished():
        return
    try:
        parent = exported()
        if parent is None:
            return
        state = outcome(trial)
        tags = {
            STATE: state,
            TRIAL_STATE: trial.state.name,
            TRIAL_NUMBER: str(trial.number),
            STUDY_NAME: study_name,
        }
        error = str(trial.user_attrs[ERROR]) if state == "FAILED" else None
        mirror_trial(parent, trial.number, tags, STATUS[state], error)
    except Exception:
        log.warning("could not update the MLflow run of trial %d", trial.number, exc_info=True)
