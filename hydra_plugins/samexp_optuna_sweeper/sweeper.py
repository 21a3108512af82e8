"""The sweep loop: ask trials, launch them as Hydra jobs, tell the study what came back.

Each job gets `optuna.storage`, `optuna.study_name`, `optuna.trial_number` and `optuna.pruner`
overrides, so it can re-attach to its trial through the shared storage to report() and
should_prune(), in process or not (basic or joblib launcher). Several sweeps may share one study
(workers.py): each asks only while the study lacks results, keeps its running trials alive with
heartbeats, and fails and retries the trials of workers that died. A job stopped by a signal
(`samexp.config.errors.Interrupted`) stops the sweep with the signal's exit code; its trial runs again.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, Trial, TrialState

from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, because
from samexp.config.errors import ConfigValueError, Interrupted
from samexp.config.options import settings
from samexp.sweeps.pruning import trial_id
from samexp.tracking.store_lock import store_lock
from samexp.training.stop import SIGNALS as STOP_SIGNALS

from .children import mirror
from .grid import GridSampler, check_same_values, points, queue_missing, trials_for
from .outcomes import close, tell
from .report import display_storage, write_results
from .space import SearchSpace, override_value, parse_search_space
from .workers import (
    INTERRUPTED,
    WORKER,
    Heartbeat,
    give_back,
    is_surplus,
    open_storage,
    progress,
    reap,
    retry_once,
    worker_id,
)

log = logging.getLogger(__name__)


@settings("hydra.sweeper", target=True)  # its signature is `hydra/sweeper=samexp_optuna`'s schema
class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str | None = None,  # None: "samexp"; name each study, or sweeps share one
        # None: in memory, no resume, no pruning
        storage: str | None = "sqlite:///mlruns/optuna.db",
        direction: Literal["maximize", "minimize"] = "maximize",  # of the job's return value
        # trials with a result (complete, pruned, or failed by the job's own error) the study
        # should hold; a rerun resumes, and every worker on the study stops when it holds them
        n_trials: Annotated[int, NON_NEGATIVE] = 20,
        # trials asked and launched together (in parallel with hydra/launcher=joblib)
        n_jobs: Annotated[int, AT_LEAST_1] = 1,
        sampler: Any = None,  # hydra/sweeper/sampler: tpe, random, gp, grid (config.py); null: Optuna's default
        pruner: Any = None,  # hydra/sweeper/pruner: median, percentile, ..., nop; null: never prune
        # key -> Hydra sweep syntax: choice(2,4,8), range(1,10,step=2), interval(1e-5,1e-2),
        # tag(log, interval(1e-5,1e-2)), int(interval(1,10)); command-line sweeps add or override
        params: Mapping[str, str] = MappingProxyType({}),
        # several sweeps (workers) may share a study: each records a heartbeat for its running
        # trials every heartbeat_interval seconds; a RUNNING trial without one for grace_period
        # seconds belongs to a worker that is gone, and any worker fails it and queues it again
        heartbeat_interval: Annotated[int, because(AT_LEAST_1, "seconds")] = 10,
        grace_period: Annotated[int, because(AT_LEAST_1, "seconds")] = 60,
    ) -> None:
        if heartbeat_interval >= grace_period:  # each in its range: checked by @settings
            raise ConfigValueError(
                f"hydra.sweeper.heartbeat_interval={heartbeat_interval}, grace_period="
                f"{grace_period}: need heartbeat_interval < grace_period (seconds)"
            )
        self.study_name = study_name or "samexp"
        self.storage = absolute_sqlite(storage)
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler_cfg = _plain(sampler)
        self.pruner_cfg = _plain(pruner) or None
        self.params = dict(_plain(params) or {})
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.rdb: optuna.storages.RDBStorage | None = None  # None: in memory, one process
        self.worker = worker_id()
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        space = parse_search_space(self.params, arguments)
        study = self.open_study()
        self.reap(study)
        study.sampler = self.sampler(already=len(study.get_trials(deepcopy=False)))
        grid = points(space.distributions) if isinstance(study.sampler, GridSampler) else None
        if grid is not None:
            check_same_values(study, space.distributions)
            log.info("a grid of %d points: one trial each (n_trials=%d is not used)", len(grid),
                     self.n_trials)  # fmt: skip
            self.n_trials = trials_for(study, grid)
        now = progress(study)
        log.info(
            "Optuna study '%s' in %s: %d trials done, %d running, %d to go for n_trials=%d; "
            "searching %s",
            study.study_name,
            display_storage(self.storage),
            now.done,
            now.running,
            max(now.free(self.n_trials), 0),
            self.n_trials,
            sorted(space.distributions) or "nothing",
        )
        if self.storage is None and self.pruner_cfg:
            log.warning("storage=null: jobs cannot reach their trials, so nothing is pruned")

        waiting = False
        while True:
            self.reap(study)
            now = progress(study)
            if now.done >= self.n_trials:
                break
            if now.free(self.n_trials) <= 0:  # the rest is running on other workers
                if not waiting:
                    log.info(
                        "%d of %d trials done, %d running on other workers: waiting for them "
                        "(a trial whose worker is gone is failed after %d s and run again)",
                        now.done, self.n_trials, now.running, self.grace_period,
                    )  # fmt: skip
                waiting = True
                time.sleep(self.heartbeat_interval)
                continue
            waiting = False
            if grid is not None:  # the points without a result, queued: ask() takes them first
                with store_lock(self.storage or ""):
                    queue_missing(study, grid)
            batch = [self.claim(study, space) for _ in range(min(self.n_jobs, now.free(self.n_trials)))]  # fmt: skip
            trials = [trial for trial in batch if trial is not None]
            interrupted = self.run(study, space, trials) if trials else None
            if interrupted is not None:
                self.stop(study, interrupted)

        write_results(study, self.sweep_dir, self.storage, self.direction)

    def open_study(self) -> optuna.Study:
        """Workers that start together on a fresh SQLite file take turns creating it."""
        with store_lock(self.storage or ""):
            if self.storage is not None:
                self.rdb = open_storage(
                    self.storage, self.heartbeat_interval, self.grace_period, self.on_stale
                )
            return optuna.create_study(
                study_name=self.study_name,
                storage=self.rdb,
                pruner=instantiate(self.pruner_cfg)
                if self.pruner_cfg
                else optuna.pruners.NopPruner(),
                direction=self.direction,
                load_if_exists=True,
            )

    def reap(self, study: optuna.Study) -> None:
        if self.rdb is None:
            return
        try:
            reap(study, self.grace_period, self.on_stale)
        except Exception as e:  # a locked database: the next round tries again
            log.warning("could not check for trials of dead workers: %s", e)

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """A trial this worker found dead (its worker stopped beating): run it again, and end
        its MLflow child KILLED, tagged INTERRUPTED."""
        log.warning(
            "trial %d of worker %s stopped beating: marked failed",
            trial.number,
            trial.user_attrs.get(WORKER, "unknown"),
        )
        retry_once(study, trial)
        mirror(study.study_name, trial)

    def claim(self, study: optuna.Study, space: SearchSpace) -> Trial | None:
        """Ask for a trial and mark it this worker's: its first heartbeat, then WORKER (so a
        trial with WORKER always has a heartbeat to go stale). None when it is surplus."""
        with warnings.catch_warnings():
            # Optuna expects heartbeats with optimize(); the sweep beats for ask()ed trials itself
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = study.ask(space.distributions)
        if self.rdb is None:
            return trial
        self.rdb.record_heartbeat(trial_id(self.rdb, study.study_name, trial.number))
        trial.set_user_attr(WORKER, self.worker)
        if is_surplus(study, trial.number, self.n_trials):
            give_back(study, trial)
            return None
        return trial

    def run(
        self, study: optuna.Study, space: SearchSpace, trials: list[Trial]
    ) -> Interrupted | None:
        """Launch the trials' jobs while beating for them; tell each result. Returns the
        first Interrupted a job raised: the sweep must stop."""
        overrides = [self.job_overrides(space, trial) for trial in trials]
        try:
            with self.heartbeat(study, trials):
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
        except BaseException as e:  # Ctrl-C outside a job's handler: every trial is cut off
            for trial in trials:
                final, told = close(study, trial, TrialState.FAIL, attrs={INTERRUPTED: _signal(e)})
                if told:
                    retry_once(study, final)
                mirror(study.study_name, final)
            raise
        self.job_idx += len(returns)
        interrupted = None
        for trial, ret in zip(trials, returns, strict=True):
            final, stop = tell(study, trial, ret)
            mirror(study.study_name, final)
            interrupted = interrupted or stop
        return interrupted

    def heartbeat(self, study: optuna.Study, trials: list[Trial]):
        if self.rdb is None:
            return contextlib.nullcontext()
        ids = [trial_id(self.rdb, study.study_name, t.number) for t in trials]
        return Heartbeat(self.rdb, ids, self.heartbeat_interval)

    def stop(self, study: optuna.Study, interrupted: Interrupted) -> None:
        """Write what the study holds, let the callbacks close the sweep (the MLflow parent gets
        its summary), and exit with the signal's code; the next trial is not started."""
        log.warning(
            "sweep stopped by %s: rerun the same command to go on (the interrupted trial runs "
            "again from its start), or first continue that trial with the resume command above "
            "(its result joins the study, and the sweep then does not train it again)",
            interrupted.signal_name,
        )
        write_results(study, self.sweep_dir, self.storage, self.direction)
        callbacks = getattr(self.hydra_context, "callbacks", None)
        if callbacks is not None:
            callbacks.on_multirun_end(
                config=self.config,
                config_name=self.config.hydra.job.config_name,
                interrupted=interrupted.signal_name,
            )
        raise SystemExit(interrupted.exit_code)

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
            # the job's folder is its trial's: unique across workers that share a sweep folder
            f"hydra.sweep.subdir=t{trial.number}",
        ]


def absolute_sqlite(storage: str | None) -> str | None:
    """A relative SQLite path made absolute (from the folder the sweep starts in), so jobs that
    chdir into their output folder open the same file; its folder is created."""
    prefix = "sqlite:///"
    if not storage or not storage.startswith(prefix) or ":memory:" in storage:
        return storage
    path = Path(storage[len(prefix) :]).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def _signal(error: BaseException) -> str:
    """The signal behind an error that escaped the jobs: Ctrl-C, or samexp's exit 129 / 130 / 143."""
    code = error.code if isinstance(error, SystemExit) else None
    if isinstance(error, KeyboardInterrupt):
        return "SIGINT"
    stops = {128 + int(s): s.name for s in STOP_SIGNALS}
    return stops.get(code, type(error).__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
