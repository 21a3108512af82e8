"""`hydra/sweeper=samexp_optuna`: the sweeper's settings, and its samplers and pruners as config
groups (`hydra/sweeper/sampler=random`, `hydra/sweeper/pruner=hyperband`), registered in Hydra's
ConfigStore. Groups, not dict overrides: assigning a new dict to a dict merges the old keys into it.

Annotations are evaluated, not postponed: see space.py's docstring."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from samexp.config.options import schema

from .sweeper import OptunaSweeper

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
class SamexpOptunaSweeperConf(schema(OptunaSweeper)):
    """OptunaSweeper's arguments (its signature: the one place their defaults are written) and
    Hydra's keys for building it."""

    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": "median"}]
    )
    # sampler and pruner arrive as configs: the sweeper hands the pruner's config to every job
    _recursive_: bool = False


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
