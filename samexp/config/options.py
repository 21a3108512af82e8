"""Config options defined once, where their code is: `@option(group, name)` beside a class or
function turns its signature into the typed schema Hydra checks `conf/<group>/<name>.yaml` against.

The signature is the single definition of every argument: its type, its default and, through
`Annotated[int, Range(low=1)]`, the values it accepts. The yaml holds only what differs. The same
registry is the allow-list for files that name code (adapter metadata): a name or `_target_` is
accepted only when an option here carries it. `settings` gives the same to what is no option: a
command's arguments (`python -m samexp.export`), the sweeper's, the automatic mask generator's.

Written here rather than taken from hydra-zen's `builds(populate_full_signature=True)`: the ranges
must reach both config validation and adapter-file validation (hydra-zen drops `Annotated`
metadata), and the registry doubles as that allow-list; the whole mechanism is this file.
"""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import pathlib
import pkgutil
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Annotated, Any, Literal, TypeVar, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from samexp.config.checks import check_in, checks_of, out_of_range
from samexp.config.errors import ConfigValueError

F = TypeVar("F", bound=Callable[..., Any])
PRIMITIVE = (int, float, bool, str, pathlib.Path)

# where options are defined: every module of these packages, and these modules, is imported
# before the registry answers (a new module in one of them needs no edit anywhere)
PACKAGES = ("samexp.models", "samexp.data", "samexp.adapters", "samexp.prompts")
MODULES = (
    "samexp.training.losses",
    "samexp.training.schedulers",
    "samexp.training.optimizers",
    "samexp.tracking.tracker",
)


@dataclass(frozen=True)
class Option:
    group: str
    name: str
    obj: Callable[..., Any]
    schema: type  # the generated dataclass, stored in Hydra's ConfigStore as <group>/<name>_schema
    provided: tuple[str, ...]  # arguments the runner passes at build time, never in a config

    @property
    def target(self) -> str:
        return target_of(self.obj)

    def arguments(self) -> list[str]:
        return [f.name for f in fields(self.schema) if f.name != "_target_"]

    def defaults(self) -> dict[str, Any]:
        """Each argument's default as a config value (MISSING for a required one)."""
        return {f.name: _default_of(f) for f in fields(self.schema) if f.name != "_target_"}


_OPTIONS: dict[str, dict[str, Option]] = {}


def target_of(obj: Callable[..., Any]) -> str:
    """The `_target_` that names `obj`."""
    return f"{obj.__module__}.{obj.__qualname__}"


def option(group: str, name: str, *, provided: Iterable[str] = ()) -> Callable[[F], F]:
    """Register `obj` as `<group>=<name>`: its signature (minus `provided`) becomes the schema."""

    def add(obj: F) -> F:
        entry = register(obj, group, name, provided=provided)
        checked = _checking_calls(obj, entry.schema, entry.group)
        if checked is not obj:  # a function: the registry calls the checking one
            _OPTIONS[group][name] = replace(entry, obj=checked)
        return checked

    return add


def register(obj: Callable[..., Any], group: str, name: str, *, provided: Iterable[str] = (),
             hints: Mapping[str, Any] | None = None) -> Option:  # fmt: skip
    """`option` for code samexp does not own (torch.optim.AdamW): `hints` gives an argument the
    `Annotated` type its own signature cannot carry, e.g. `{"lr": Annotated[float, POSITIVE]}`."""
    provided = tuple(provided)
    entry = Option(group, name, obj, schema_of_signature(obj, provided, hints), provided)
    known = _OPTIONS.setdefault(group, {}).get(name)
    if known is not None and known.target != entry.target:
        raise TypeError(f"option {group}={name} is already {known.target}")
    _OPTIONS[group][name] = entry
    ConfigStore.instance().store(group=group, name=f"{name}_schema", node=entry.schema)
    return entry


def options(group: str) -> dict[str, Option]:
    """Every option of `group` (sorted by name), after importing every module that may define one."""
    load_all()
    return dict(sorted(_OPTIONS.get(group, {}).items()))


def names(group: str) -> str:
    """`${samexp_options:adapter}`: every option of `group`, comma-separated, so a sweep over all
    of them (hparams_search=adapter_study) follows the registry, never a list kept by hand."""
    return ",".join(options(group))


OmegaConf.register_new_resolver("samexp_options", names, replace=True)


def groups() -> list[str]:
    load_all()
    return sorted(_OPTIONS)


def by_target(group: str, target: Any) -> Option | None:
    """The option of `group` whose code `target` names exactly; None for anything else."""
    return next((o for o in options(group).values() if o.target == target), None)


def load_all() -> None:
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if not module.name.endswith(".__main__"):  # a command, run only when asked for
                importlib.import_module(module.name)
    for module_name in MODULES:
        importlib.import_module(module_name)


def settings(where: str, *, provided: Iterable[str] = (), hints: Mapping[str, Any] | None = None,
             target: bool = False) -> Callable[[F], F]:  # fmt: skip
    """`obj`'s signature as the typed schema of the settings at `where` (a command's config, or a
    node such as `hydra.sweeper`), like an option's but outside the option registry: `schema(obj)`
    returns it, and every call refuses a value outside a declared range naming `where.<argument>`.
    `target` adds the `_target_` Hydra instantiates it by."""

    def add(obj: F) -> F:
        made = schema_of_signature(obj, tuple(provided), hints, target=target)
        checked = _checking_calls(obj, made, where)
        checked.__config_schema__ = made  # type: ignore[attr-defined]
        return checked

    return add


def schema(obj: Callable[..., Any]) -> type:
    """The schema `@settings` generated from `obj`'s signature."""
    return obj.__config_schema__  # type: ignore[attr-defined]


def _checking_calls(obj: F, schema: type, where: str) -> F:
    """`obj` refusing, on every call, a value outside the range its signature declares: the same
    rule, in the same words, for a config, an adapter file and a direct Python call."""
    if not checks_of(schema):
        return obj
    function = obj.__init__ if inspect.isclass(obj) else obj
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind_partial(*args, **kwargs).arguments
        prefix = f"{where}." if where else ""
        problems = [f"{prefix}{name}={value!r}: {problem}"
                    for name, value, problem in out_of_range(schema, given)]  # fmt: skip
        if problems:
            raise ConfigValueError("; ".join(problems))
        return function(*args, **kwargs)

    if inspect.isclass(obj):
        obj.__init__ = checked
        return obj
    return checked  # type: ignore[return-value]


# --- schema from a signature -----------------------------------------------------------------
def schema_of_signature(obj: Callable[..., Any], provided: tuple[str, ...] = (),
                        hints: Mapping[str, Any] | None = None, *,
                        target: bool | str = True) -> type:  # fmt: skip
    """A dataclass with one field per argument of `obj` (less `provided`): its type as near as
    OmegaConf can check it, its default, and its check kept in the type (`Annotated[int, Range]`,
    read by `checks.checks_of`). `hints` replaces the annotations of code samexp does not own.
    `target` adds the `_target_` that builds `obj`; a str is the name to write (a library's public
    `optuna.samplers.TPESampler` rather than the private module that defines it)."""
    function = obj.__init__ if inspect.isclass(obj) else obj
    annotations = {**_annotations(function), **(hints or {})}
    parameters = list(inspect.signature(obj).parameters.values())
    unknown = (set(provided) | set(hints or {})) - {p.name for p in parameters}
    if unknown:
        raise TypeError(f"{obj.__qualname__} has no argument {sorted(unknown)}")
    specs: list[tuple[str, Any, Any]] = []
    if target:
        name = target if isinstance(target, str) else target_of(obj)
        specs.append(("_target_", str, field(default=name)))
    for p in parameters:
        if p.name in provided or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        specs.append((p.name, config_type(annotations.get(p.name, Any)), _field(obj, p)))
    name = "".join(part[:1].upper() + part[1:] for part in obj.__name__.split("_")) + "Config"
    schema = make_dataclass(name, specs)
    schema.__module__ = obj.__module__  # where its definition is, in OmegaConf's messages
    return schema


def _annotations(function: Callable[..., Any]) -> dict[str, Any]:
    """`function`'s argument types; in code samexp does not own, a type its module imports only
    for type checkers (Optuna's `Callable[[int], int]`) is Any: nothing a config can hold."""
    try:
        return typing.get_type_hints(function, include_extras=True)
    except NameError:
        found = {}
        for name, hint in getattr(function, "__annotations__", {}).items():
            holder = types.SimpleNamespace(__annotations__={name: hint})
            try:
                found.update(
                    typing.get_type_hints(holder, function.__globals__, include_extras=True)
                )
            except NameError:
                found[name] = Any
        return found


def config_type(hint: Any) -> Any:
    """The nearest type OmegaConf can check (Any where it cannot), still carrying the check
    `Annotated` or `Literal` declares."""
    check = check_in(hint)
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is Literal:
        kind = type(typing.get_args(hint)[0])
    else:
        kind = _sanitised(hint)
    return kind if check is None else Annotated[kind, check]


def _sanitised(hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in PRIMITIVE or (inspect.isclass(hint) and issubclass(hint, enum.Enum)):
        return hint
    if origin in (Union, types.UnionType):
        # members a config can hold (a Tensor or a module cannot be written in yaml): one of them
        # is the type; several plain ones stay a union; a mix of containers gives up to Any
        kept = [_sanitised(a) for a in args if a is not type(None)]
        kept = list(dict.fromkeys(k for k in kept if k is not Any))
        if len(kept) == 1:
            inner = kept[0]
        elif kept and all(k in PRIMITIVE for k in kept):
            inner = Union[tuple(kept)]  # noqa: UP007
        else:
            return Any
        return inner | None if type(None) in args else inner
    if origin in (list, tuple, Sequence, Iterable, typing.List, typing.Tuple):  # noqa: UP006
        items = {_sanitised(a) for a in args if a is not Ellipsis}
        return list[items.pop()] if len(items) == 1 and next(iter(items)) in PRIMITIVE else list
    if origin in (dict, Mapping):
        return dict
    return Any


def _field(obj: Callable[..., Any], p: inspect.Parameter) -> Any:
    if p.default is inspect.Parameter.empty:
        return field(default=MISSING)
    value = p.default
    if isinstance(value, tuple | list):
        items = list(value)
        return field(default_factory=lambda: list(items))
    if isinstance(value, Mapping):  # a MappingProxyType: the immutable default of a signature
        mapping = dict(value)
        return field(default_factory=lambda: dict(mapping))
    if value is not None and not isinstance(value, (*PRIMITIVE, enum.Enum)):
        raise TypeError(f"{obj.__qualname__}({p.name}={value!r}): a config default must be a "
                        "plain value, a list or None")  # fmt: skip
    return field(default=value)


def _default_of(f: Any) -> Any:
    if f.default is not NO_DEFAULT:
        return f.default
    return f.default_factory() if f.default_factory is not NO_DEFAULT else MISSING
