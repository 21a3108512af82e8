"""The adapter kinds a saved file may name: samexp's own classes, each registered by its module.

A file names its adapter by `kind`, never by import path, so reading it cannot run other code.
Adding an adapter is one module in this package whose class carries `@register_adapter(schema)`;
nothing central lists them (`registered` imports every module of the package before it answers).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from samexp.adapters.base import Adapter

A = TypeVar("A", bound="type[Adapter]")


@dataclass(frozen=True)
class Registered:
    cls: type[Adapter]
    schema: type  # the typed config dataclass of its hyperparameters (samexp/config.py)

    @property
    def target(self) -> str:
        """The `_target_` files saved before kinds existed name this class by."""
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def hparam_names(self) -> list[str]:
        return [f.name for f in fields(self.schema) if f.name != "_target_"]


_KINDS: dict[str, Registered] = {}


def register_adapter(schema: type) -> Callable[[A], A]:
    """Class decorator: files may name `cls.kind`; `schema` types its hyperparameters."""

    def add(cls: A) -> A:
        entry = Registered(cls, schema)
        known = _KINDS.get(cls.kind)
        if known is not None and known.target != entry.target:
            raise TypeError(f"adapter kind {cls.kind!r} is already {known.target}")
        _KINDS[cls.kind] = entry
        return cls

    return add


def _import_adapter_modules() -> None:
    import samexp.adapters as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def registered() -> dict[str, Registered]:
    """Every registered kind (sorted), after importing each module of `samexp.adapters`."""
    _import_adapter_modules()
    return dict(sorted(_KINDS.items()))


def kind_of_target(target: str) -> str | None:
    """The kind of a class named by its old `_target_` path; None for anything else."""
    return next((kind for kind, r in registered().items() if r.target == target), None)
