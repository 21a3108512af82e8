"""Report a job's per-epoch metric to its Optuna trial and stop it when the pruner says so.

The sweeper hands the job storage, study name and trial number; the trial is re-attached from
the shared storage here, so pruning works with any Hydra launcher, in or out of process.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from hydra.utils import instantiate

log = logging.getLogger(__name__)


class TrialReporter:
    def __init__(
        self, storage: str, study_name: str, trial_number: int, pruner: Any = None
    ) -> None:
        import optuna

        self._pruned = optuna.TrialPruned
        pruner_obj = instantiate(pruner) if pruner else optuna.pruners.NopPruner()
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner_obj)
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(
            study._study_id, trial_number
        )
        self.trial = optuna.Trial(study, trial_id)
        self.number = trial_number

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
                         pruner: Any) -> TrialReporter | None:  # fmt: skip
    """None outside an Optuna sweep (the sweeper sets all three)."""
    if storage is None or study_name is None or trial_number is None:
        return None
    return TrialReporter(storage, study_name, trial_number, pruner)
