"""What an adapter file's metadata may say, checked before anything is built from it.

Adapter files travel (shared MLflow servers, downloads), so their metadata is untrusted input: the
adapter is looked up by kind in the registry, every value is typed against its schema (generated
from its constructor, samexp/config/options.py), and each refusal is one line naming the file and the key.
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from samexp.adapters.base import Adapter
from samexp.adapters.registry import registered
from samexp.config.checks import checks_of, out_of_range
from samexp.config.errors import SamexpError, UntrustedFileError
from samexp.config.options import Option, by_target, options
from samexp.prompts.class_tokens import TokensPerClass

META_KEY = "samexp"  # the safetensors metadata entry that holds the JSON
# a model builder's arguments that say where its weights come from: the reader's choice
# (load_finetuned's arguments), never the file's
READER_ARGUMENTS = ("checkpoint", "cache_dir", "mirror", "download")
# what to do with an adapter file that does not name its kind: its run still has what made it
NO_KIND = (
    "samexp reads an adapter by its kind only; re-save the file from its run (run its config again)"
)


@dataclass
class FileMeta:
    """The top level, besides `adapter` and `base` (checked by their own schemas)."""

    samexp_version: str | None = None
    tensors: int | None = None  # absent: not checked


@dataclass
class ClassPromptsMeta:
    """Learned class prompts (prompt=class_tokens): the class names, in token order."""

    classes: list[str] = MISSING
    tokens: TokensPerClass = MISSING  # per class: the range prompt=class_tokens declares


@dataclass
class BaseMeta:
    """The base model the tensors were trained on, besides its `build_kwargs`."""

    arch: str = MISSING
    weights_id: str = MISSING
    img_size: int | None = None  # absent in files saved before the encoder size could change


def refuse(path: str | Path, key: str, problem: str) -> NoReturn:
    message = f"{path}: metadata key {key}: {problem}"
    raise UntrustedFileError(" ".join(message.splitlines()))


def parse_meta(text: str, path: str | Path) -> dict[str, Any]:
    """The metadata JSON, checked and normalised (the adapter named by kind, with every hparam)."""
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        refuse(path, META_KEY, f"not valid JSON ({e})")
    raw = _mapping(raw, META_KEY, path)
    top = {k: v for k, v in raw.items() if k not in ("adapter", "base", "class_prompts")}
    meta = typed(FileMeta, top, "", path, fill=True)
    for key in ("adapter", "base"):
        if key not in raw:
            refuse(path, key, "missing: was this file saved by samexp?")
    meta["adapter"] = check_adapter_spec(raw["adapter"], path)
    meta["base"] = check_base(raw["base"], path)
    if raw.get("class_prompts") is not None:
        meta["class_prompts"] = check_class_prompts(raw["class_prompts"], path)
    return meta


def check_class_prompts(value: Any, path: str | Path) -> dict[str, Any]:
    """A non-empty list of distinct class names and a token count in its declared range."""
    spec = typed(ClassPromptsMeta, _mapping(value, "class_prompts", path), "class_prompts", path)
    classes = spec.get("classes")
    if classes is None or spec.get("tokens") is None:
        refuse(path, "class_prompts", "needs both classes and tokens")
    if not classes or len(set(classes)) != len(classes):
        refuse(path, "class_prompts.classes", "must be distinct names, at least one")
    return spec


def check_adapter_spec(spec: Any, path: str | Path) -> dict[str, Any]:
    """`{"kind": ..., **hparams}` of a registered adapter. The kind is the one way a file names its
    adapter: an import path (`_target_`) is refused outright, whatever class it names."""
    spec = dict(_mapping(spec, "adapter", path))
    kinds = registered()
    if "_target_" in spec:  # never followed, whatever class it names
        refuse(path, "adapter._target_", f"{_show(spec['_target_'])} is an import path: {NO_KIND}")
    kind = spec.pop("kind", None)
    if kind is None:
        refuse(path, "adapter.kind", f"missing: {NO_KIND}")
    if not isinstance(kind, str) or kind not in kinds:
        refuse(path, "adapter.kind", f"unknown adapter {_show(kind)}; known: {', '.join(kinds)}")
    return {"kind": kind, **typed(kinds[kind].schema, spec, "adapter", path, fill=True)}


def adapter_from_spec(spec: Any, path: str | Path) -> Adapter:
    """The registered adapter class built from checked hyperparameters (never Hydra's instantiate:
    that would import whatever `_target_` the file names)."""
    spec = check_adapter_spec(spec, path)
    hparams = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return registered()[spec["kind"]].obj(**hparams)
    except SamexpError as e:  # the adapter's own range checks, which name the key
        raise UntrustedFileError(f"{path}: metadata {e}") from None


def check_base(base: Any, path: str | Path) -> dict[str, Any]:
    """The base model description: a registered model builder (`_target_`) and only the arguments
    a file may give it, with their config types and ranges; where the weights come from
    (`READER_ARGUMENTS`) is never among them."""
    base = _mapping(base, "base", path)
    own = {k: v for k, v in base.items() if k not in ("_target_", "build_kwargs")}
    described = typed(BaseMeta, own, "base",
                      path, fill=True, names=[*_names(BaseMeta), "_target_", "build_kwargs"])  # fmt: skip
    builder = _builder(base.get("_target_"), described["arch"], path)
    names = [n for n in builder.arguments() if n not in READER_ARGUMENTS]
    kwargs = dict(_mapping(base.get("build_kwargs") or {}, "base.build_kwargs", path))
    if described["weights_id"].startswith("random:") and "pretrained" in names:
        kwargs.setdefault("pretrained", False)  # files saved before builders recorded it
    kwargs = typed(builder.schema, kwargs, "base.build_kwargs", path, names=names)
    if "arch" in names and kwargs.get("arch", described["arch"]) != described["arch"]:
        problem = f"{_show(kwargs['arch'])} contradicts base.arch {described['arch']!r}"
        refuse(path, "base.build_kwargs.arch", problem)
    return {**described, "_target_": builder.target, "build_kwargs": kwargs}


def _builder(target: Any, arch: str, path: str | Path) -> Option:
    """The registered model option that rebuilds the base: named by `_target_`, or, in files saved
    before bases named it, the one whose `arch` argument accepts the file's arch."""
    models = options("model")
    if target is not None:
        entry = by_target("model", target)
        if entry is None:
            known = ", ".join(o.target for o in models.values())
            refuse(path, "base._target_", f"{_show(target)} is not a samexp model; known: {known}")
        return entry
    for entry in models.values():
        check = checks_of(entry.schema).get("arch")
        if check is not None and check.allows(arch):
            return entry
    archs = [c for o in models.values()
             for c in getattr(checks_of(o.schema).get("arch"), "choices", ())]  # fmt: skip
    refuse(path, "base.arch", f"unknown architecture {_show(arch)}; known: {', '.join(archs)}")


def typed(schema: type, values: dict[str, Any], key: str, path: str | Path, fill: bool = False,
          names: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """`values` converted to `schema`'s field types (OmegaConf's rules, as for config files) and
    checked against the ranges it declares.

    Only `names` (default: the schema's fields but `_target_`) may appear, each a plain value or a
    list of them; interpolations are refused, as they would read the environment or other keys.
    Returns the given keys, or every schema key with its default when `fill`.
    """
    names = names if names is not None else _names(schema)
    for name, value in values.items():
        where = _join(key, name)
        if name not in names:
            refuse(path, where, f"unknown key; known: {', '.join(names) or 'none'}")
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            at = f"{where}[{i}]" if isinstance(value, list) else where
            if item is not None and not isinstance(item, str | int | float | bool):
                refuse(path, at, f"expected a plain value, got {type(item).__name__}")
            if isinstance(item, str) and "${" in item:
                refuse(path, at, "interpolations (${...}) are not allowed in a file")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        converted = OmegaConf.to_container(merged, throw_on_missing=True)
    except OmegaConfBaseException as e:
        refuse(path, _join(key, str(e.full_key)), (e.msg or str(e)).splitlines()[0])
    given = {k: converted[k] for k in values if k in converted}
    for name, value, problem in out_of_range(schema, given):  # the ranges the schema declares
        refuse(path, _join(key, name), f"{_show(value)} {problem}")
    return {k: converted[k] for k in (names if fill else values) if k in converted}


def _names(schema: type) -> list[str]:
    return [f.name for f in fields(schema) if f.name != "_target_"]


def _mapping(value: Any, key: str, path: str | Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        refuse(path, key, f"expected a mapping, got {type(value).__name__}")
    return value


def _join(key: str, name: str) -> str:
    shown = name if name.replace("[", "").replace("]", "").isidentifier() else repr(name)
    return f"{key}.{shown}" if key else shown


def _show(value: Any) -> str:
    return reprlib.repr(value)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")
