"""Report a job's per-epoch metric to its Optuna trial and stop it when the pruner says so.

The sweeper hands the job storage, study name and trial number; the trial is re-attached from
the shared storage here, so pruning works with any Hydra launcher, in or out of process. The job
never beats for its trial: the sweep that asked for it does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from samexp.config.distributed import World, any_rank, broadcast
from samexp.server.client import use_credentials

if TYPE_CHECKING:
    from samexp.sweeps.late_trial import LateTrial

log = logging.getLogger(__name__)


class TrialReporter:
    def __init__(
        self, storage: str, study_name: str, trial_number: int, pruner: Any = None
    ) -> None:
        import optuna

        self._pruned = optuna.TrialPruned
        pruner_obj = instantiate(pruner) if pruner else optuna.pruners.NopPruner()
        use_credentials()  # a team server's password: from its credentials file, never the URL
        # the storage object itself, for its public id lookups (a Study hides its storage)
        rdb = optuna.storages.RDBStorage(storage)
        study = optuna.load_study(study_name=study_name, storage=rdb, pruner=pruner_obj)
        self.trial = optuna.trial.Trial(study, trial_id(rdb, study_name, trial_number))
        self.number = trial_number

    def finish(self, value: float | None) -> dict[str, str]:
        """Nothing to tell: the sweep tells the trial what the job returns."""
        return {}

    def __call__(self, value: float, epoch: int) -> None:
        """Raises optuna.TrialPruned when the pruner judges this trial hopeless."""
        if math.isnan(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            log.info("trial %d pruned after epoch %d (value %.4f)", self.number, epoch, value)
            raise self._pruned(
                f"trial {self.number} pruned at epoch {epoch} with value {value:.4f}"
            )


def reporter_from_config(storage: str | None, study_name: str | None, trial_number: int | None,
                         pruner: Any) -> TrialReporter | LateTrial | None:  # fmt: skip
    """None outside an Optuna sweep (the sweeper sets all three); a LateTrial when the trial has
    already ended: a sweep trial's run resumed after its sweep stopped (see late_trial.py)."""
    if storage is None or study_name is None or trial_number is None:
        return None
    import optuna

    from samexp.sweeps.late_trial import LateTrial

    rdb = optuna.storages.RDBStorage(storage)
    trial = rdb.get_trial(trial_id(rdb, study_name, trial_number))
    if trial.state.is_finished():
        return LateTrial(rdb, study_name, trial)
    return TrialReporter(storage, study_name, trial_number, pruner)


def shared_verdict(
    reporter: TrialReporter | None, world: World
) -> Callable[[float, int], None] | None:
    """Under torchrun rank 0 alone reports to the trial; every rank learns its verdict, so all
    stop at the same epoch (one rank pruned alone would leave the others waiting forever)."""
    if not world.distributed:
        return reporter
    if not broadcast(reporter is not None, world):
        return None

    def report(value: float, epoch: int) -> None:
        import optuna

        verdict = None
        if reporter is not None:
            try:
                reporter(value, epoch)
            except optuna.TrialPruned as pruned:
                verdict = pruned
        if any_rank(verdict is not None, world):
            raise verdict or optuna.TrialPruned(f"pruned at epoch {epoch} (rank 0's trial)")

    return report


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of a study's trial, through the storage's public lookups (a Study keeps
    its storage and its trials' ids private)."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)
