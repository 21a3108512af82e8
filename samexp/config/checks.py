"""Allowed values, declared one way: in the type, `Annotated[int, Range(low=1)]` (or a `Literal`),
beside the default, on a signature's argument or a dataclass's field alike; checked in one place.

Config files (`samexp.config.schema.validate`), the commands' settings and adapter files
(`samexp.adapters.meta`) share these, so a value out of range gets the same words wherever it came
from.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Annotated, Any, Literal


@dataclass(frozen=True)
class Range:
    """The numbers a field accepts; `None` stays allowed for optional fields."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False  # low itself excluded
    open_high: bool = False
    why: str = ""  # joins the message: "must be >= 1 (epochs)"

    def allows(self, value: Any) -> bool:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {self.high:g}"
        return (f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.open_high else ']'}")  # fmt: skip


@dataclass(frozen=True)
class Pattern:
    """The strings a field accepts (a full-match regex), described in the user's words."""

    regex: str
    description: str
    why: str = ""

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class OneOf:
    """The values a field accepts, listed (what a `Literal[...]` annotation says)."""

    choices: tuple[Any, ...]
    why: str = ""

    def allows(self, value: Any) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return f"one of {', '.join(map(str, self.choices))}"


Check = Range | Pattern | OneOf


def because(check: Check, why: str) -> Check:
    """`check`, saying why in its message: `Annotated[int, because(AT_LEAST_1, "epochs")]`."""
    return replace(check, why=why)


AT_LEAST_1 = Range(low=1)
NON_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, open_low=True)
UNIT = Range(0, 1)  # a probability, a threshold on a score in [0, 1]
Seed = Annotated[int, because(NON_NEGATIVE, "numpy takes no negative seed")]


def check_in(hint: Any) -> Check | None:
    """The check a type declares: the `Range`, `Pattern` or `OneOf` of `Annotated[...]`, or the
    choices of a `Literal[...]`."""
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        found = next((e for e in extras if isinstance(e, Range | Pattern | OneOf)), None)
        return found if found is not None else check_in(hint)
    if typing.get_origin(hint) is Literal:
        return OneOf(typing.get_args(hint))
    return None


@functools.cache
def checks_of(schema: type) -> dict[str, Check]:
    """Each field of the dataclass `schema` that declares a check, with it."""
    hints = typing.get_type_hints(schema, include_extras=True)
    found = {f.name: check_in(hints.get(f.name)) for f in fields(schema)}
    return {name: check for name, check in found.items() if check is not None}


def out_of_range(schema: type, values: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(field, value, "must be ...") for each value that fails the check its field declares;
    fields absent from `values`, or None, pass. Config files and adapter files share it."""
    for name, check in checks_of(schema).items():
        value = values.get(name)
        if value is None or check.allows(value):
            continue
        why = f" ({check.why})" if check.why else ""
        # inf passes every one-sided bound as written, so say what it breaks
        finite = "a finite number " if isinstance(value, float) and math.isinf(value) else ""
        yield name, value, f"must be {finite}{check}{why}"


def declared(schema: type) -> list[str]:
    """The keys a config of `schema` may hold (its `_target_` is no choice of the user's)."""
    return [f.name for f in fields(schema) if f.name != "_target_"]


def unknown_keys(schema: type, values: Iterable[str]) -> list[str]:
    """The keys of `values` that `schema` does not declare: what a `+group.key=value` override
    adds past the schema's own check."""
    return [key for key in values if key != "_target_" and key not in declared(schema)]


def closest(word: str, known: Iterable[str]) -> str:
    """The words of `known` nearest to a misspelt `word`, or all of them when none is near."""
    known = sorted(known)
    near = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
    if near:
        return f"did you mean {' or '.join(near)}?"
    return f"valid: {', '.join(known)}" if known else "it takes no keys"
