"""How samexp's commands start Hydra: a config that does not compose (a misspelt key, a value of
the wrong type, an option that does not exist, an override Hydra cannot parse) stops the command
with one line naming the key and the closest valid ones (exit 2), instead of Hydra's block and
its advice to `+` the key, which only moves the failure to the model's constructor.

`HYDRA_FULL_ERROR=1` still gives Hydra's own report and the whole traceback.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import os
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

import hydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from samexp.config.checks import closest
from samexp.config.errors import SamexpError

FULL_ERROR = (
    "HYDRA_FULL_ERROR"  # set, Hydra re-raises what it would report: composition errors reach us
)
log = logging.getLogger("samexp")


def hydra_main(config_path: str | None, config_name: str) -> Callable[[Callable], Callable]:
    """`@hydra.main(version_base="1.3", ...)` whose composition errors are one line."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        ours = False  # HYDRA_FULL_ERROR set by us, for the composition only

        @functools.wraps(task)
        def started(cfg: DictConfig) -> Any:
            nonlocal ours
            from samexp.config.schema import undeclared  # the option registry: loaded once composed

            problems = undeclared(cfg)
            if problems:  # `+adapter.rnak=4`: composed, but the constructor would fail on it
                _said("; ".join(problems))
            if ours:  # composed: from here on the task's own errors get Hydra's usual report
                os.environ.pop(FULL_ERROR, None)
                ours = False
            return task(cfg)

        composed = hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(
            started
        )

        @functools.wraps(task)
        def main() -> Any:
            nonlocal ours
            if FULL_ERROR in os.environ:  # the user asked for Hydra's full report
                return composed()
            os.environ[FULL_ERROR], ours = "1", True
            try:
                return composed()
            except (HydraException, OmegaConfBaseException, SamexpError) as e:
                _said(one_line(e))
            finally:
                if ours:
                    os.environ.pop(FULL_ERROR, None)
                    ours = False

        return main

    return decorate


def _said(problem: str) -> typing.NoReturn:
    """The one line, formatted as the command's other errors are (Hydra has not set up logging
    when composition fails), and exit 2."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    log.error("%s", problem)
    sys.exit(2)


def one_line(error: BaseException) -> str:
    """A composition error in the user's words, on one line."""
    cause = error.__cause__
    if isinstance(error, MissingConfigException) and error.options is not None:
        return _no_such_option(error)
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
        path = _overridden(str(error)) or cause.full_key
        schema = cause.object_type
        if dataclasses.is_dataclass(schema):
            from samexp.config.schema import (
                no_such_key,  # the option registry: loaded only to say this
            )

            return no_such_key(path, schema, str(cause.key))
        return f"{path}: no such key"
    if isinstance(cause, ValidationError) and cause.full_key:
        return f"{cause.full_key}={cause.value!r}: {_expected(cause)}"
    if isinstance(error, OverrideParseException):
        return f"cannot read the overrides: {_first_line(error)} (quote values with spaces or brackets)"
    return _first_line(error)


def _no_such_option(error: MissingConfigException) -> str:
    """`adapter=lorra: no such option; did you mean lora?`"""
    group, _, name = (error.missing_cfg_file or "").rpartition("/")
    choices = [o for o in error.options or [] if not o.endswith("_schema")]
    return f"{group}={name}: no such {group} option; {closest(name, choices)}"


def _overridden(message: str) -> str | None:
    """The key the user wrote (`trainr.epochs`), where OmegaConf names only its first unknown part."""
    found = re.match(r"Could not override '([^']+)'", message)
    return found.group(1) if found else None


def _expected(cause: ValidationError) -> str:
    """What the field takes, from its schema: `must be an integer`, `must be one of cpu, cuda`."""
    schema, key = cause.object_type, cause.key
    if dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema)
        if key in hints:
            return f"must be {_described(hints[key])}"
    return _first_line(cause)


def _described(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) < len(typing.get_args(hint)):  # Optional[X]
        return f"{_described(args[0]) if len(args) == 1 else 'a value'} or null"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(m.name for m in hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return "a list, e.g. [1,2]"
    if origin is dict:
        return "a mapping, e.g. {a:1}"
    return f"a {getattr(hint, '__name__', hint)}"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
