"""`hydra/sweeper=samexp_optuna`: the sweeper's settings, and its samplers and pruners as config
groups (`hydra/sweeper/sampler=random`, `hydra/sweeper/pruner=hyperband`), registered in Hydra's
ConfigStore. Groups, not dict overrides: assigning a new dict to a dict merges the old keys into it.

Annotations are evaluated, not postponed: see space.py's docstring."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class

from samexp.config.options import schema, schema_of_signature

from .sweeper import OptunaSweeper


def preset(target: str, **differs: Any) -> Any:
    """The node that builds the Optuna class `target` (its public name): the class's signature is
    the schema, so every argument is typed, at Optuna's own default, and can be overridden without
    `+`; `differs` is what samexp sets otherwise."""
    return schema_of_signature(get_class(target), target=target)(**differs)


# Only what differs from Optuna's defaults, each with why.
SEED = 0  # a sweep proposes the same points when run again; a resumed study offsets it (sweeper.py)
SAMPLERS = {
    "tpe": preset(
        "optuna.samplers.TPESampler",
        seed=SEED,
        # each parameter modelled alone, as samexp's sweeps always were (Optuna >= 5 picks
        # multivariate TPE for one objective)
        multivariate=False,
        # trials of one batch (n_jobs > 1) count each other as running, so they spread out;
        # Optuna's default since 5, written because optuna 4 (False) is still allowed
        constant_liar=True,
    ),
    "random": preset("optuna.samplers.RandomSampler", seed=SEED),
    "gp": preset("optuna.samplers.GPSampler", seed=SEED),
    # every point once, in order, resumable and shared by workers (grid.py)
    "grid": preset("hydra_plugins.samexp_optuna_sweeper.grid.GridSampler"),
}
# when median and percentile may first prune: sooner than Optuna's defaults, for samexp's sweeps
# hold tens of trials of a few epochs each (hparams_search=lora_rank_lr: 20)
PATIENCE = {
    "n_startup_trials": 3,  # trials that finish before any is pruned
    "n_warmup_steps": 1,  # every trial runs its first epoch (step 0) before it can be pruned
}
PRUNERS = {
    "median": preset("optuna.pruners.MedianPruner", **PATIENCE),
    # Optuna has no default: keep the trials in the top 25th percentile at each step
    "percentile": preset("optuna.pruners.PercentilePruner", percentile=25.0, **PATIENCE),
    "successive_halving": preset("optuna.pruners.SuccessiveHalvingPruner"),
    "hyperband": preset("optuna.pruners.HyperbandPruner"),
    # set hydra.sweeper.pruner.lower and/or .upper
    "threshold": preset("optuna.pruners.ThresholdPruner"),
    "nop": preset("optuna.pruners.NopPruner"),
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
