"""`hydra/sweeper/sampler=grid`: every point of the search space exactly once, in a study that
several workers share and a rerun resumes (hparams_search=adapter_study: adapter × seed).

Optuna's own GridSampler is made for `study.optimize`: it stops the study from `after_trial`,
which raises under the sweeper's ask-and-tell, and counts a point whose trial was cut off as
visited, so a point cut off twice would never run. Here the sweeper queues, before each ask,
every point that holds no result and is neither queued nor running (`queue_missing`, Optuna's
public `enqueue_trial`); ask() takes queued trials first, in order, so the grid is walked in
the order of its keys (the first key varies slowest), a cut-off point is queued again, and
workers sharing the study each take the next point. The sampler itself only marks the study
as a grid: every trial's params are fixed by the queue.

Annotations are evaluated, not postponed: see space.py's docstring.
"""

import itertools
import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from samexp.config.errors import ConfigValueError

from .space import SearchSpaceError
from .workers import is_result


class GridSampler(BaseSampler):
    """Marks a study as a grid (the sweeper queues its points); never asked for a value."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> Any:
        raise RuntimeError(f"grid trial {trial.number} has no queued value for {name}")


def points(distributions: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every combination of the values of `distributions`, the first key varying slowest."""
    values = {key: _values(key, d) for key, d in distributions.items()}
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def queue_missing(study: optuna.Study, grid: list[dict[str, Any]]) -> int:
    """Queue the points of `grid` that have no result and are not queued or running; returns
    how many were queued."""
    held = [
        _params(t)
        for t in study.get_trials(deepcopy=False)
        if is_result(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)
    ]
    missing = [p for p in grid if p not in held]
    for point in missing:
        study.enqueue_trial(point)
    return len(missing)


def check_same_values(study: optuna.Study, distributions: Mapping[str, BaseDistribution]) -> None:
    """Optuna keeps one set of choices per parameter for a study's life: a grid over other
    choices (an adapter registered since, `adapter=a,b`) is another study, said in one line."""
    for trial in study.get_trials(deepcopy=False):
        for key, held in trial.distributions.items():
            new = distributions.get(key)
            if isinstance(held, CategoricalDistribution) and new is not None and new != held:
                raise ConfigValueError(
                    f"study '{study.study_name}' ran {key} over {list(held.choices)}, and this "
                    f"grid sweeps {key} over {list(getattr(new, 'choices', []))}: Optuna keeps "
                    "one set of choices per study; name another study "
                    "(hydra.sweeper.study_name=...) or sweep the same choices"
                )


def trials_for(study: optuna.Study, grid: list[dict[str, Any]]) -> int:
    """The n_trials that holds every point of `grid`: its size, plus the results the study holds
    outside it (an earlier grid's, when a rerun sweeps fewer or other values), which count too."""
    outside = sum(is_result(t) and _params(t) not in grid for t in study.get_trials(deepcopy=False))
    return len(grid) + outside


def _params(trial: FrozenTrial) -> dict[str, Any]:
    # a queued trial (or one just taken from the queue) holds its point as fixed params
    return trial.params or trial.system_attrs.get("fixed_params", {})


def _values(key: str, d: BaseDistribution) -> list[Any]:
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution) and not d.log:
        return list(range(d.low, d.high + 1, d.step))
    if isinstance(d, FloatDistribution) and d.step is not None and not d.log:
        n = math.floor((d.high - d.low) / d.step + 1e-9)
        return [d.low + i * d.step for i in range(n + 1)]
    raise SearchSpaceError(
        f"{key}: a grid needs finite values, not {d}; use choice(...) or range(...)"
    )
