"""How a job's return becomes its trial's state: a value, PRUNED, or FAIL with the reason (the
job's own error, a result; or the signal that interrupted it, queued to run again)."""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, Trial, TrialState

from samexp.config.errors import Interrupted, SamexpError

from .workers import ERROR, INTERRUPTED, retry_once

log = logging.getLogger(__name__)


def tell(
    study: optuna.Study, trial: Trial, ret: JobReturn
) -> tuple[FrozenTrial, Interrupted | None]:
    """A failed or pruned job never aborts the study: it is recorded and the sweep goes on. An
    interrupted one is recorded FAIL with the signal, queued to run again, and returned. Returns
    the trial as it ended (another worker may have failed it first, if this one looked dead)."""
    if ret.status == JobStatus.COMPLETED:
        value = _as_float(ret.return_value)
        if value is not None:
            return close(study, trial, values=value)[0], None
        log.warning(
            "trial %d returned %r, not a number: recorded as failed",
            trial.number,
            ret.return_value,
        )
        error_text = f"returned {ret.return_value!r}, not a number"
        return close(study, trial, TrialState.FAIL, attrs={ERROR: error_text})[0], None
    error = ret._return_value  # the exception; `return_value` would re-raise it
    if isinstance(error, optuna.TrialPruned):
        return close(study, trial, TrialState.PRUNED)[0], None
    if isinstance(error, Interrupted):
        final, told = close(study, trial, TrialState.FAIL, attrs={INTERRUPTED: error.signal_name})
        if told:
            retry_once(study, final)
        return final, error
    # a samexp error is the user's words, already logged by the job: its traceback is noise (one
    # per trial when every trial meets the same bad setting); anything else keeps its traceback
    trace = None if isinstance(error, SamexpError) else error
    log.warning(
        "trial %d failed: %s: %s", trial.number, type(error).__name__, error, exc_info=trace
    )
    error_text = f"{type(error).__name__}: {error}"[:2000]
    return close(study, trial, TrialState.FAIL, attrs={ERROR: error_text})[0], None


def close(
    study: optuna.Study,
    trial: Trial,
    state: TrialState | None = None,
    values: float | None = None,
    attrs: dict[str, Any] | None = None,
) -> tuple[FrozenTrial, bool]:
    """Finish the trial with its attributes; False when it was already finished (another
    worker failed it as stale meanwhile): the stored trial is returned, untouched. Like
    `tell(skip_if_finished=True)`, but says whether this tell was the one that ended the trial,
    so that only one worker queues its retry."""
    try:
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)
        return study.tell(trial, values, state=state), True
    except (UpdateFinishedTrialError, ValueError):  # ValueError: "Cannot tell a FAIL trial"
        final = _stored(study, trial.number)
        if not final.state.is_finished():
            raise
    log.warning(
        "trial %d was already %s (failed by another worker as stale): its result is dropped",
        trial.number,
        final.state.name,
    )
    return final, False


def _stored(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
