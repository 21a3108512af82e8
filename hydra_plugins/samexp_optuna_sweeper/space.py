"""Turn Hydra sweep overrides (`choice`, `range`, `interval`, `tag(log, ...)`, `int(...)`) into
Optuna distributions, and values back into override strings a job can parse.

No `from __future__ import annotations` (nor in config.py): Hydra's plugin scan executes these
modules before they are in sys.modules, where a dataclass cannot resolve string annotations."""

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


class SearchSpaceError(ValueError):
    """A search-space entry that cannot become an Optuna distribution; the message names the key."""


@dataclass(frozen=True)
class SearchSpace:
    """What every trial samples, and the overrides every job gets unchanged."""

    distributions: dict[str, BaseDistribution]  # override key (e.g. `adapter.rank`) -> distribution
    fixed: list[str]  # plain overrides such as `experiment=rings` or `+trainer.x=1`


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """`params` (hydra.sweeper.params) first, then the command line, which wins for a key both set:
    a command-line sweep replaces the configured range, a plain value fixes the parameter."""
    parser = OverridesParser.create()
    by_key: dict[str, Override] = {}
    for key, value in params.items():
        line = f"{key}={value}"
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException as e:
            raise SearchSpaceError(
                f"hydra.sweeper.params.{key}: cannot parse '{value}': {e}"
            ) from e
        by_key[override.get_key_element()] = override
    for override in parser.parse_overrides(list(arguments)):
        by_key[override.get_key_element()] = override

    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for key, override in by_key.items():
        if override.is_sweep_override():
            distributions[key] = distribution_from_override(override)
        else:
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return SearchSpace(distributions, fixed)


def distribution_from_override(override: Override) -> BaseDistribution:
    """Ranges keep Hydra's meaning: `range(1,10)` is 1..9, as the basic sweeper runs it."""
    key = override.get_key_element()
    value = override.value()
    try:
        if isinstance(value, ChoiceSweep):
            choices = list(override.sweep_iterator(transformer=Transformer.identity))
            for choice in choices:
                if not isinstance(choice, (str, int, float, bool)):
                    raise ValueError(f"choices must be strings or numbers, not {choice!r}")
            return CategoricalDistribution(choices)
        if isinstance(value, RangeSweep):
            values = sorted(override.sweep_iterator(transformer=Transformer.identity))
            if not values:
                raise ValueError("the range is empty")
            step, log = abs(value.step), "log" in value.tags
            if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
                return IntDistribution(values[0], values[-1], step=step, log=log)
            return FloatDistribution(values[0], values[-1], step=step, log=log)
        if isinstance(value, IntervalSweep):
            log = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(value.start, value.end, log=log)
        raise ValueError(f"{type(value).__name__} sweeps are not supported")
    except ValueError as e:
        raise SearchSpaceError(
            f"{key}: '{(override.input_line or '').partition('=')[2]}' is not a search space Optuna can "
            f"sample ({e}); use choice(...), range(...), interval(...), tag(log, interval(...)) "
            "or int(interval(...))"
        ) from e


def override_value(value: Any) -> str:
    """A value as Hydra override text that parses back to the same value (strings always quoted,
    so `'4'` stays a string and a choice like `'a b'` stays one value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a Hydra override value")


def _quote(text: str) -> str:
    # Hydra's quoted strings: only backslashes before a quote or at the end need doubling.
    text = re.sub(r"(\\*)'", lambda m: m[1] * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m[1] * 2, text)
    return f"'{text}'"
