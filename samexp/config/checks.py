"""Allowed values, declared on a dataclass field beside its default and checked in one place.

Config files (`samexp.config.schema.validate`) and adapter files (`samexp.adapters.meta`) share these,
so a value out of range gets the same words whichever file it came from.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


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


def checked(default: Any, check: Check, why: str = "") -> Any:
    """A dataclass field whose value `validate` checks against `check` (`why` joins the message)."""
    return field(default=default, metadata={"check": replace(check, why=why) if why else check})


def because(check: Check, why: str) -> Check:
    """`check`, saying why in its message: `Annotated[int, because(AT_LEAST_1, "epochs")]`."""
    return replace(check, why=why)


AT_LEAST_1 = Range(low=1)
NON_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, open_low=True)


def out_of_range(schema: type, values: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(field, value, "must be ...") for each value that fails the check its field declares;
    fields absent from `values`, or None, pass. Config files and adapter files share it."""
    for f in fields(schema):
        check, value = f.metadata.get("check"), values.get(f.name)
        if check is None or value is None or check.allows(value):
            continue
        why = f" ({check.why})" if check.why else ""
        # inf passes every one-sided bound as written, so say what it breaks
        finite = "a finite number " if isinstance(value, float) and math.isinf(value) else ""
        yield f.name, value, f"must be {finite}{check}{why}"


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
