"""`hydra/sweeper=samexp_optuna`: the sweeper's settings, and its samplers and pruners as config
groups (`hydra/sweeper/sampler=random`, `hydra/sweeper/pruner=hyperband`), registered in Hydra's
ConfigStore. Groups, not dict overrides: assigning a new dict to a dict merges the old keys into it.

Annotations are evaluated, not postponed: see space.py's docstring."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

# The usual arguments are listed so they can be overridden without `+` (the nodes are structs).
SAMPLERS = {
    "tpe": {
        "_target_": "optuna.samplers.TPESampler",
        "seed": 0,
        "n_startup_trials": 10,  # random trials before TPE models the results
        "multivariate": False,
        # trials of one batch (n_jobs > 1) count each other as running, so they spread out
        "constant_liar": True,
    },
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": 0},
    "gp": {"_target_": "optuna.samplers.GPSampler", "seed": 0, "n_startup_trials": 10},
}
PRUNERS = {
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 3,  # trials that finish before any is pruned
        "n_warmup_steps": 1,  # epochs each trial runs before it can be pruned
        "interval_steps": 1,
    },
    "percentile": {
        "_target_": "optuna.pruners.PercentilePruner",
        "percentile": 25.0,
        "n_startup_trials": 3,
        "n_warmup_steps": 1,
        "interval_steps": 1,
    },
    "successive_halving": {
        "_target_": "optuna.pruners.SuccessiveHalvingPruner",
        "min_resource": "auto",
        "reduction_factor": 4,
        "min_early_stopping_rate": 0,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
    },
    # set hydra.sweeper.pruner.lower and/or .upper
    "threshold": {"_target_": "optuna.pruners.ThresholdPruner", "lower": None, "upper": None},
    "nop": {"_target_": "optuna.pruners.NopPruner"},
}


@dataclass
class SamexpOptunaSweeperConf:
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}]
    )
    _target_: str = "hydra_plugins.samexp_optuna_sweeper.sweeper.OptunaSweeper"
    # sampler and pruner arrive as configs: the sweeper hands the pruner's config to every job
    _recursive_: bool = False

    study_name: str | None = None  # None: "samexp"; name each study, or sweeps share one
    storage: str | None = "sqlite:///mlruns/optuna.db"  # None: in memory, no resume, no pruning
    direction: str = "maximize"  # or "minimize"; the job's return value is the objective
    # trials with a result (complete, pruned, or failed by the job's own error) the study should
    # hold; a rerun resumes, and every worker on the study stops when it holds them
    n_trials: int = 20
    n_jobs: int = 1  # trials asked and launched together (in parallel with hydra/launcher=joblib)
    sampler: Any = None  # hydra/sweeper/sampler: tpe (seed 0), random, gp; null: Optuna's default
    pruner: Any = None  # hydra/sweeper/pruner: median, percentile, ..., nop; null: never prune
    # key -> Hydra sweep syntax: choice(2,4,8), range(1,10,step=2), interval(1e-5,1e-2),
    # tag(log, interval(1e-5,1e-2)), int(interval(1,10)); command-line sweeps add or override
    params: dict[str, str] = field(default_factory=dict)
    # several sweeps (workers) may share a study: each records a heartbeat for its running trials
    # every heartbeat_interval seconds; a RUNNING trial without one for grace_period seconds
    # belongs to a worker that is gone, and any worker fails it and queues it to run once more
    heartbeat_interval: int = 10
    grace_period: int = 60


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(
        group="hydra/sweeper", name="samexp_optuna", node=SamexpOptunaSweeperConf, provider="samexp"
    )
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="samexp")
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider="samexp")


register()
