"""The configuration reference, generated from the code at build time so it cannot drift.

Every option group (each `@option` schema in samexp.config.options), every settings dataclass
(samexp.config.schema.SETTINGS and the root Config), the yaml files that ship in samexp/conf/ and the
schemas of the other commands (predict, evaluate, export) and of the sweeper become
`reference/configuration.md`. Accepted values are the checks each field's `Annotated` type declares.
`render()` is the whole generator; the mkdocs hook below only adds its text as a page.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hydra.utils import get_class
from mkdocs.structure.files import File
from omegaconf import MISSING

import samexp
from hydra_plugins.samexp_optuna_sweeper.config import PRUNERS, SAMPLERS, SamexpOptunaSweeperConf
from hydra_plugins.samexp_optuna_sweeper.sweeper import OptunaSweeper
from samexp.config.checks import checks_of
from samexp.config.options import groups, load_all, options
from samexp.config.schema import SETTINGS, Config, TrialConfig
from samexp.evaluate.saved import EvaluateConfig
from samexp.export import ExportConfig, export
from samexp.predict.config import PredictConfig

PAGE = "reference/configuration.md"
HIDDEN = {"_target_", "_recursive_", "defaults"}  # Hydra's own keys
# how a group is chosen; groups missing here are shown in the order of samexp.config.options.groups()
ORDER = ("model", "dataset", "adapter", "loss", "prompt", "optim", "scheduler", "augment",
         "trainer", "tracking", "cache", "paths", "experiment", "hparams_search")  # fmt: skip
TRAILING = re.compile(r"#\s*(fmt|noqa|type)\s*:.*$")


# --- reading the code -------------------------------------------------------------------------
def conf_dir() -> Path:
    return Path(samexp.__file__).parent / "conf"


def comments(obj: Any) -> dict[str, str]:
    """Each argument's or field's comment in the source: the `# ...` lines just above it and the
    one at the end of its line."""
    try:
        lines = inspect.getsource(obj).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"\s*(\w+)\s*(:|=)", line)
        code, _, trailing = line.partition("  #")
        trailing = TRAILING.sub("", "#" + trailing).lstrip("#").strip() if trailing else ""
        if match and match.group(1) not in found and (pending or trailing):
            found[match.group(1)] = " ".join([*pending, trailing]).strip()
        pending = []
    return found


def summary(obj: Any) -> str:
    """The first paragraph of `obj`'s docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""  # the signature dataclasses write when a class has no docstring
    return " ".join(doc.split("\n\n")[0].split())


def type_name(hint: Any) -> str:
    if isinstance(hint, str):
        return hint
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return "str"
    if hint is typing.Any:
        return "any"
    if inspect.isclass(hint) and not typing.get_args(hint):
        return hint.__name__
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"<class '(\w+)'>", r"\1", text)


def accepted(check: Any, hint: Any) -> str:
    parts = []
    if check is not None:
        parts.append(f"{check} ({check.why})" if check.why else str(check))
    members = [a for a in (hint, *typing.get_args(hint)) if inspect.isclass(a)]
    for kind in members:
        if issubclass(kind, enum.Enum):
            parts.append("one of " + ", ".join(str(m.value) for m in kind))
    return "; ".join(parts)


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING


def as_yaml(value: Any) -> str:
    if value is MISSING or value == "???":
        return "*required*"
    if isinstance(value, enum.Enum):
        value = value.value
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"`{text.removesuffix('...').strip()}`"


def rows(schema: type, prefix: str = "") -> Iterator[tuple[str, str, str, str, str]]:
    """(argument, type, default, accepted values, comment) per field, nested dataclasses flattened
    to dotted names."""
    try:
        hints = typing.get_type_hints(schema)
    except (NameError, TypeError):
        hints = {}
    notes = comments(schema)
    for f in dataclasses.fields(schema):
        if f.name in HIDDEN:
            continue
        hint = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(hint):
            yield from rows(hint, f"{prefix}{f.name}.")
            continue
        check = checks_of(schema).get(f.name)
        yield (f"{prefix}{f.name}", type_name(hint), as_yaml(default_of(f)), accepted(check, hint),
               notes.get(f.name, ""))  # fmt: skip


def cell(text: str) -> str:
    """`text` for a table cell: `<name>` outside code spans is text, not an HTML tag."""
    parts = text.replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def table(schema: type, notes: dict[str, str] | None = None) -> list[str]:
    out = ["| argument | type | default | accepts | notes |", "|---|---|---|---|---|"]
    for name, kind, default, allowed, note in rows(schema):
        note = (notes or {}).get(name.split(".")[0], "") or note
        out.append(f"| `{name}` | {cell(kind)} | {cell(default)} | {cell(allowed)} | "
                   f"{cell(note)} |")  # fmt: skip
    if len(out) == 2:
        out.append("| *(none)* | | | | |")
    return out


# --- the yaml in samexp/conf ------------------------------------------------------------------
def choices(group: str) -> dict[str, Path]:
    folder = conf_dir() / group
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def schema_named(path: Path) -> str | None:
    """The `<name>_schema` a yaml extends (its defaults list), without `_schema`."""
    data = yaml.safe_load(path.read_text()) or {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry.endswith("_schema"):
            return entry.removesuffix("_schema")
    return None


def root_defaults() -> dict[str, str | None]:
    """group -> the choice conf/config.yaml's defaults list makes (None: off)."""
    data = yaml.safe_load((conf_dir() / "config.yaml").read_text())
    out: dict[str, str | None] = {}
    for entry in data["defaults"]:
        if isinstance(entry, dict):
            out.update(entry)
    return out


def yaml_block(path: Path) -> list[str]:
    relative = path.relative_to(conf_dir().parent.parent).as_posix()
    return [f'```yaml title="{relative}"', path.read_text().rstrip(), "```", ""]


# --- the page ---------------------------------------------------------------------------------
def option_groups() -> list[str]:
    known = [*groups(), *(g for g in SETTINGS if (conf_dir() / g).is_dir())]
    yaml_only = [p.name for p in sorted(conf_dir().iterdir()) if p.is_dir() and p.name != "hydra"]
    every = dict.fromkeys([*ORDER, *known, *yaml_only])
    return [g for g in every if g in known or g in yaml_only]


def group_section(group: str, default: str | None) -> list[str]:
    out = [f"## `{group}`", ""]
    made = choices(group)
    chosen = f"`{group}={default}`" if default else "off (`null`)"
    out += [f"Chosen with `{group}=<choice>`; by default {chosen}.", ""]
    if made:
        out += ["| choice | extends |", "|---|---|"]
        for name, path in made.items():
            base = schema_named(path)
            target = f"option [`{base}`](#{group}-{base})" if base else "overrides of other groups"
            out.append(f"| `{group}={name}` | {target} |")
        out.append("")
    if group in SETTINGS:
        schema = SETTINGS[group]
        out += [f"### `{group}` settings {{#{group}-{group}}}", "",
                f"`{schema.__module__}.{schema.__qualname__}`. {summary(schema)}", ""]  # fmt: skip
        out += [*table(schema), ""]
    for name, entry in options(group).items():
        out += [f"### Option `{name}` {{#{group}-{name}}}", ""]
        out += [f"Builds `{entry.target}`. {summary(entry.obj)}", ""]
        if entry.provided:
            given = ", ".join(f"`{p}`" for p in entry.provided)
            out += [f"Passed by the runner at build time, never in a config: {given}.", ""]
        out += [*table(entry.schema, comments(entry.obj)), ""]
        using = [n for n, p in made.items() if schema_named(p) == name]
        if not using:
            out += ["No yaml in `samexp/conf` extends it.", ""]
    if made:
        what = ("What each choice sets beyond its option's defaults (comments included):"
                if options(group) or group in SETTINGS
                else "Each is a `# @package _global_` bundle of overrides:")  # fmt: skip
        out += ["### The yaml files", "", what, ""]
        for path in made.values():
            out += yaml_block(path)
    return out


def root_section() -> list[str]:
    notes = {"eval_prompt": "a `prompt` option; default: `prompt` without training randomness"}
    out = ["## Top-level keys", "",
           "The root of every run's config, `samexp.config.schema.Config`: the groups above plus these "
           "keys (`python -m samexp seed=1 objective=best/val/iou`).", ""]  # fmt: skip
    nested = tuple(f"| `{g}" for g in (*option_groups(), "optuna"))
    kept = [r for r in table(Config, notes)[2:] if not r.startswith(nested)]
    out += ["| argument | type | default | accepts | notes |", "|---|---|---|---|---|", *kept, ""]
    out += ["### `optuna` (set by the sweeper) {#optuna}", "",
            f"{summary(TrialConfig)}", "", *table(TrialConfig), ""]  # fmt: skip
    return out


def commands_section() -> list[str]:
    out = ["## Other commands", ""]
    for command, schema, source, yaml_file in (
        ("python -m samexp.predict", PredictConfig, PredictConfig, "predict.yaml"),
        ("python -m samexp.evaluate", EvaluateConfig, EvaluateConfig, "evaluate.yaml"),
        ("python -m samexp.export", ExportConfig, export, None),
    ):
        out += [f"### `{command}`", "", f"`{source.__module__}.{source.__qualname__}`"
                f"{'' if source is schema else ' (its signature)'}.", ""]  # fmt: skip
        out += [*table(schema, comments(source)), ""]
        if yaml_file:
            out += yaml_block(conf_dir() / yaml_file)
    out += ["## The Optuna sweeper {#sweeper}", "",
            "`hydra/sweeper=samexp_optuna` (what `hparams_search=lora_rank_lr` picks), set with "
            "`hydra.sweeper.<key>=...`: `hydra_plugins/samexp_optuna_sweeper/config.py`.", "",
            *table(SamexpOptunaSweeperConf, comments(OptunaSweeper.__init__)), ""]  # fmt: skip
    picks = [e for e in default_of(SamexpOptunaSweeperConf.__dataclass_fields__["defaults"])
             if isinstance(e, dict)]  # fmt: skip
    chosen = ", ".join(f"`{k}={v}`" for e in picks for k, v in e.items())
    out += [f"Its defaults list fills in {chosen}, replacing the `null` above.", ""]
    for kind, nodes in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        out += [f"### `hydra/sweeper/{kind}=<choice>`", "",
                f"Each choice builds an Optuna class whose signature is its schema: every argument "
                f"is a key (`hydra.sweeper.{kind}.<argument>=...`) at Optuna's own default except "
                "the ones samexp sets (why: `hydra_plugins/samexp_optuna_sweeper/config.py`).", "",
                "| choice | builds | samexp sets |", "|---|---|---|"]  # fmt: skip
        for name, node in nodes.items():
            changed = ", ".join(f"`{k}: {as_yaml(v).strip('`')}`" for k, v in preset_changes(node))
            out.append(f"| `{name}` | `{node._target_}` | {cell(changed) or '*(nothing)*'} |")
        out.append("")
    launchers = sorted((conf_dir() / "hydra" / "launcher").glob("*.yaml"))
    if launchers:
        out += ["## Hydra launchers", ""]
        for path in launchers:
            out += [f"### `hydra/launcher={path.stem}`", "", *yaml_block(path)]
    return out


def preset_changes(node: Any) -> list[tuple[str, Any]]:
    """(argument, value) where a sampler or pruner preset differs from its class's signature."""
    arguments = inspect.signature(get_class(node._target_)).parameters.values()
    return [(a.name, getattr(node, a.name)) for a in arguments
            if getattr(node, a.name) != a.default]  # fmt: skip


def render() -> str:
    """The whole reference page, as markdown."""
    load_all()
    defaults = root_defaults()
    every = option_groups()
    out = [
        "# Configuration reference",
        "",
        "Generated from the code when the site is built (`docs/hooks/config_reference.py`): every "
        "group, every option with each argument's type, default and accepted values, and the yaml "
        "each choice ships with. Types and ranges are the ones a run checks at startup; an "
        "override outside them stops the run naming the key (see [Concepts](../concepts.md)).",
        "",
        "Groups: " + ", ".join(f"[`{g}`](#{g})" for g in every) + ", [top-level keys]"
        "(#top-level-keys), [other commands](#other-commands), [the Optuna sweeper](#sweeper).",
        "",
    ]
    for group in every:
        out += group_section(group, defaults.get(group))
    out += root_section()
    out += commands_section()
    return "\n".join(out).rstrip() + "\n"


# --- mkdocs ------------------------------------------------------------------------------------
def on_files(files: Any, config: Any) -> Any:
    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=render()))
    return files
