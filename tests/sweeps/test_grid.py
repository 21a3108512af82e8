"""`hydra/sweeper/sampler=grid`: every point once, in the order of its keys; a point whose trial
was cut off is queued again, however often; a rerun over other values keeps the earlier results."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.samexp_optuna_sweeper.grid import (
    GridSampler,
    check_same_values,
    points,
    queue_missing,
    trials_for,
)
from hydra_plugins.samexp_optuna_sweeper.space import SearchSpaceError
from hydra_plugins.samexp_optuna_sweeper.workers import ERROR
from samexp.config.errors import ConfigValueError

SPACE = {"trainer.seed": IntDistribution(0, 1), "adapter": CategoricalDistribution(["lora", "full"])}  # fmt: skip


def grid_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=GridSampler())


def test_the_grid_is_every_combination_with_the_first_key_varying_slowest():
    assert points(SPACE) == [
        {"trainer.seed": 0, "adapter": "lora"},
        {"trainer.seed": 0, "adapter": "full"},
        {"trainer.seed": 1, "adapter": "lora"},
        {"trainer.seed": 1, "adapter": "full"},
    ]
    assert points({"lr": FloatDistribution(0.1, 0.3, step=0.1)}) == [
        {"lr": pytest.approx(v)} for v in (0.1, 0.2, 0.3)
    ]


def test_a_continuous_range_is_refused_naming_its_key():
    with pytest.raises(SearchSpaceError, match="optim.lr: a grid needs finite values"):
        points({"optim.lr": FloatDistribution(1e-5, 1e-2, log=True)})


def test_queued_points_are_asked_in_order_and_a_cut_off_point_is_queued_again():
    study, grid = grid_study(), points(SPACE)
    assert queue_missing(study, grid) == 4
    assert queue_missing(study, grid) == 0  # queued already: a second worker adds nothing
    first = study.ask(SPACE)
    assert first.params == grid[0]
    study.tell(first, 0.5)
    cut = study.ask(SPACE)
    study.tell(cut, state=TrialState.FAIL)  # cut off (no ERROR): not a result
    failed = study.ask(SPACE)
    failed.set_user_attr(ERROR, "its own error")
    study.tell(failed, state=TrialState.FAIL)  # a result: never run again
    assert queue_missing(study, grid) == 1
    rest = [study.ask(SPACE).params for _ in range(2)]
    assert rest == [grid[3], grid[1]]  # the one queued before, then the cut-off point again


def test_a_rerun_over_fewer_values_needs_the_results_outside_its_grid_counted():
    study = grid_study()
    queue_missing(study, points(SPACE))
    for _ in range(4):
        study.tell(study.ask(SPACE), 0.5)
    fewer = points({"trainer.seed": IntDistribution(0, 2), "adapter": CategoricalDistribution(["lora"])})  # fmt: skip
    assert queue_missing(study, fewer) == 1  # seed 2 only
    assert trials_for(study, fewer) == 3 + 2  # its 3 points and the two `full` results


def test_a_grid_over_other_choices_than_its_study_ran_is_refused_in_one_line():
    study = grid_study()
    queue_missing(study, points(SPACE))
    study.tell(study.ask(SPACE), 0.5)
    check_same_values(study, SPACE)  # the same grid resumes
    more = {**SPACE, "adapter": CategoricalDistribution(["lora", "full", "bitfit"])}
    with pytest.raises(ConfigValueError, match=r"ran adapter over \['lora', 'full'\].*study_name"):
        check_same_values(study, more)
