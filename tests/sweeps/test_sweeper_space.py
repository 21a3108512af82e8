"""Hydra sweep syntax -> Optuna distributions, and values -> override text that parses back."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.samexp_optuna_sweeper.space import (
    SearchSpaceError,
    override_value,
    parse_search_space,
)


def space_of(value: str):
    return parse_search_space({"p": value}, []).distributions["p"]


@pytest.mark.parametrize(
    ("syntax", "expected"),
    [
        ("choice(2,4,8)", CategoricalDistribution([2, 4, 8])),
        ("choice(adam, 'sgd w')", CategoricalDistribution(["adam", "sgd w"])),
        ("choice(0.1,0.5)", CategoricalDistribution([0.1, 0.5])),
        ("choice(true,false)", CategoricalDistribution([True, False])),
        # Hydra's range excludes its stop, as the basic sweeper runs it: 1..9
        ("range(1,10)", IntDistribution(1, 9, step=1)),
        ("range(1,10,step=2)", IntDistribution(1, 9, step=2)),
        ("range(2,10,step=4)", IntDistribution(2, 6, step=4)),
        ("range(10,1,step=-3)", IntDistribution(4, 10, step=3)),
        ("range(0.0,1.0,step=0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
        ("interval(1e-5,1e-2)", FloatDistribution(1e-5, 1e-2)),
        ("interval(1,10)", FloatDistribution(1.0, 10.0)),  # Hydra's interval is float
        ("tag(log, interval(1e-5, 1e-2))", FloatDistribution(1e-5, 1e-2, log=True)),
        ("int(interval(1,10))", IntDistribution(1, 10)),
        ("tag(log, int(interval(1,100)))", IntDistribution(1, 100, log=True)),
    ],
)
def test_each_sweep_syntax_maps_to_its_optuna_distribution(syntax, expected):
    assert space_of(syntax) == expected


def test_command_line_sweeps_override_params_and_plain_overrides_pass_through_unchanged():
    space = parse_search_space(
        {"lr": "interval(1e-4,1e-2)", "rank": "choice(2,4)", "epochs": "3"},
        ["rank=choice(8,16)", "experiment=rings", "+trainer.x='a b'", "lr=0.001"],
    )
    assert space.distributions == {"rank": CategoricalDistribution([8, 16])}
    assert space.fixed == ["lr=0.001", "epochs=3", "experiment=rings", "+trainer.x='a b'"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("interval(1,", "cannot parse"),
        ("interval(5,1)", "not a search space"),
        ("tag(log, interval(0,1))", "not a search space"),
        ("range(5,5)", "range is empty"),
        ("choice([1,2],[3])", "strings or numbers"),
    ],
)
def test_a_malformed_search_space_is_an_error_naming_the_key(value, message):
    with pytest.raises(ValueError, match=rf"adapter\.rank.*{message}") as raised:
        parse_search_space({"adapter.rank": value}, [])
    # by name: Hydra's plugin scan (run by any earlier test that starts Hydra) re-executes the
    # plugin's modules, so the class imported above may no longer be the one raised
    assert type(raised.value).__name__ == SearchSpaceError.__name__


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -2.5, 1e-05, float("inf"), "lora", "4", "a b,c", "it's", "end\\", "x\\'y",
     {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "nested": {"a": [1, "b"]}}],
)  # fmt: skip
def test_override_values_parse_back_to_the_same_value(value):
    (override,) = OverridesParser.create().parse_overrides([f"k={override_value(value)}"])
    assert override.value() == value
