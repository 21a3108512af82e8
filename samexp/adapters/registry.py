"""The adapter kinds a saved file may name: samexp's own classes, each registered by its module.

A file names its adapter by `kind`, never by import path, so reading it cannot run other code.
Adding an adapter is one module in this package whose class carries `@register_adapter`: that
registers it as the config option `adapter=<kind>` (samexp.config.options), its constructor's signature
the typed schema, and nothing central lists it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from samexp.config.options import Option, option, options

if TYPE_CHECKING:
    from samexp.adapters.base import Adapter

A = TypeVar("A", bound="type[Adapter]")


def register_adapter(cls: A) -> A:
    """Class decorator: `adapter=<cls.kind>` in configs, and a kind files may name."""
    return option("adapter", cls.kind)(cls)


def registered() -> dict[str, Option]:
    """Every registered kind (sorted), after importing every module that may define one."""
    return options("adapter")
