"""The sweep loop: ask a batch of trials, launch them as Hydra jobs, tell the study what came back.

Each job gets `optuna.storage`, `optuna.study_name`, `optuna.trial_number` and `optuna.pruner`
overrides, so it can re-attach to its trial through the shared storage to report() and
should_prune(), in process or not (basic or joblib launcher).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from .space import SearchSpace, override_value, parse_search_space

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str | None,
        storage: str | None,
        direction: str,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        params: DictConfig | None,
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={direction}: use maximize or minimize")
        if n_trials < 0 or n_jobs < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: need n_trials >= 0, n_jobs >= 1"
            )
        self.study_name = study_name or "samexp"
        self.storage = absolute_sqlite(storage)
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner) or None
        self.params = _plain(params) or {}
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        space = parse_search_space(self.params, arguments)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            pruner=instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        fail_stale_trials(study)
        study.sampler = self.sampler(already=len(study.get_trials(deepcopy=False)))
        finished = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED]
        remaining = max(self.n_trials - len(finished), 0)
        log.info(
            "Optuna study '%s' in %s: %d finished trials, %d to run for n_trials=%d; searching %s",
            study.study_name,
            display_storage(self.storage),
            len(finished),
            remaining,
            self.n_trials,
            sorted(space.distributions) or "nothing",
        )
        if self.storage is None and self.pruner_cfg:
            log.warning("storage=null: jobs cannot reach their trials, so nothing is pruned")

        while remaining > 0:
            trials = [study.ask(space.distributions) for _ in range(min(self.n_jobs, remaining))]
            overrides = [self.job_overrides(space, trial) for trial in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns, strict=True):
                tell(study, trial, ret)
            remaining -= len(trials)

        self.write_results(study)

    def sampler(self, already: int) -> optuna.samplers.BaseSampler:
        """A resumed study offsets the seed by its trial count: with the first run's seed the
        sampler would propose the first run's (random startup) points again."""
        if not self.sampler_cfg:
            return optuna.samplers.TPESampler()
        cfg = dict(self.sampler_cfg)
        if cfg.get("seed") is not None:
            cfg["seed"] += already
        return instantiate(cfg)

    def job_overrides(self, space: SearchSpace, trial: Trial) -> list[str]:
        return [
            *space.fixed,
            *(f"{key}={override_value(value)}" for key, value in trial.params.items()),
            f"optuna.storage={override_value(self.storage)}",
            f"optuna.study_name={override_value(self.study_name)}",
            f"optuna.trial_number={trial.number}",
            f"optuna.pruner={override_value(self.pruner_cfg)}",
        ]

    def write_results(self, study: optuna.Study) -> None:
        counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        best = best_trial(study)
        if best is None:
            log.warning(
                "Optuna study '%s': no trial completed (%s)", study.study_name, dict(counts)
            )
        else:
            log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results = {
            "study_name": study.study_name,
            "storage": display_storage(self.storage),
            "direction": self.direction,
            "trials": dict(counts),
            "best_trial": None if best is None else best.number,
            "best_value": None if best is None else best.value,
            "best_params": None if best is None else best.params,
        }
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optuna_results.yaml")
        table = self.sweep_dir / "trials.csv"
        study.trials_dataframe().to_csv(table, index=False)

        parent_run_id = os.environ.get("SAMEXP_PARENT_RUN_ID")
        if parent_run_id:
            from .report import log_study  # mlflow and matplotlib only when there is a run

            try:
                log_study(
                    study,
                    table,
                    tracking_uri=os.environ.get("SAMEXP_TRACKING_URI"),
                    run_id=parent_run_id,
                    storage=display_storage(self.storage),
                )
            except Exception:  # the study is safe in its storage and in trials.csv
                log.warning(
                    "could not log the study to MLflow run %s", parent_run_id, exc_info=True
                )


def tell(study: optuna.Study, trial: Trial, ret: JobReturn) -> None:
    """A failed or pruned job never aborts the study: it is recorded and the sweep goes on."""
    if ret.status == JobStatus.COMPLETED:
        value = _as_float(ret.return_value)
        if value is None:
            log.warning(
                "trial %d returned %r, not a number: recorded as failed",
                trial.number,
                ret.return_value,
            )
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
        return
    error = ret._return_value  # the exception; `return_value` would re-raise it
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        return
    log.warning(
        "trial %d failed: %s: %s", trial.number, type(error).__name__, error, exc_info=error
    )
    study.tell(trial, state=TrialState.FAIL)


def fail_stale_trials(study: optuna.Study) -> None:
    """RUNNING trials in the storage belong to a sweep that was killed: they will never finish.
    (WAITING trials are enqueued ones; ask() runs them first, so they are kept.)"""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    if stale:
        log.warning(
            "marked %d trials left RUNNING by an interrupted sweep as failed: %s",
            len(stale),
            [t.number for t in stale],
        )


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def absolute_sqlite(storage: str | None) -> str | None:
    """A relative SQLite path made absolute (from the folder the sweep starts in), so jobs that
    chdir into their output folder open the same file; its folder is created."""
    prefix = "sqlite:///"
    if not storage or not storage.startswith(prefix) or ":memory:" in storage:
        return storage
    path = Path(storage[len(prefix) :]).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def display_storage(storage: str | None) -> str:
    """The storage URL without its password, for logs and MLflow."""
    if storage is None:
        return "memory"
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
