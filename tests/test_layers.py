"""samexp's folders are its layers, and imports only go down them: a module may import its own
layer or a lower one, never a higher one, so each layer can be read, tested and changed without
the ones built on it.

Every import counts, wherever it stands (module level, inside a function, under TYPE_CHECKING): a
function-local import is still a dependency, only a later one. The rule is computed from source
text (`climbs`), so tools can apply the same rule to any revision.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ROOT = "samexp"  # the package itself holds only __version__: the floor, with config
# low to high; a module belongs to the longest name here that it equals or sits under
LAYERS: list[tuple[str, ...]] = [
    # the floor: options, schema, checks, paths, errors, limits; and the one image pipeline
    # (data.frame): each model family declares its input geometry with it, datasets resize with it
    ("samexp.config", "samexp.data.frame"),
    # what a run reads and what it adapts, side by side: neither imports the other (SIBLINGS)
    ("samexp.data", "samexp.models"),
    ("samexp.adapters", "samexp.prompts"),
    ("samexp.training",),
    # the homes of the outside systems a run reports to: MLflow (tracking) and the team server's
    # PostgreSQL and credentials (server), which tracking connects through; `python -m
    # samexp.server`, the command, is server.__main__ below
    ("samexp.tracking", "samexp.server"),
    ("samexp.sweeps",),
    # commands users run, each on top of the layers above
    ("samexp.runner", "samexp.__main__", "samexp.predict", "samexp.evaluate", "samexp.export",
     "samexp.app", "samexp.server.__main__", "samexp.ui", "samexp.data.__main__",
     "samexp.report"),
]  # fmt: skip
# same layer, yet independent: a dataset never needs a model, nor a model a dataset
SIBLINGS = [("samexp.data", "samexp.models")]
# the pipeline is one command: the others stand beside it and never import it
PIPELINE, ITS_ENTRY = "samexp.runner", "samexp.__main__"

# Climbs known today, each waiting for a move in a file another change of issue 24 is rewriting.
# Listed, not ignored: a new climb fails, and so does an entry here once its climb is gone.
PENDING: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int | None:
    """The layer `module` belongs to; None for a module of no layer (a new top-level one)."""
    if module == ROOT:
        return 0
    best, found = -1, None
    for number, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), number
    return found


def _under(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def module_name(path: str) -> str:
    """`samexp/data/files.py` -> `samexp.data.files`; a package's `__init__.py` is the package."""
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, is_package: bool, source: str, known: set[str]) -> Iterable[str]:
    """The samexp modules `source` imports, anywhere in it: `from samexp.training import
    distributed` is `samexp.training.distributed` when that is a module of its own."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if _under(alias.name, ROOT))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, `level - 1` steps up
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not _under(target, ROOT):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            yield from subs or [target]


def climbs(sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(importer, imported, why) for every import that breaks the layers, given each module's
    path (`samexp/...py`) and source; sorted, each pair once."""
    modules = {module_name(p): (p.endswith("/__init__.py"), s) for p, s in sources.items()}
    found = set()
    for module, (is_package, source) in modules.items():
        own = layer_of(module)
        if own is None:
            found.add((module, "", "belongs to no layer: add it to LAYERS in tests/test_layers.py"))
            continue
        for target in set(imported(module, is_package, source, set(modules))):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                found.add((module, target, f"layer {own} imports layer {theirs}"))
            if theirs != 0 and any(_under(module, a) and _under(target, b)
                                   or _under(module, b) and _under(target, a)
                                   for a, b in SIBLINGS):  # fmt: skip
                found.add((module, target, "data and models import neither the other"))
            if _under(target, PIPELINE) and module != ITS_ENTRY and not _under(module, PIPELINE):
                found.add((module, target, f"only {ITS_ENTRY} imports the pipeline"))
    return sorted(found)


def samexp_sources(root: Path = REPO) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted((root / "samexp").rglob("*.py"))
    }


def test_no_module_imports_a_higher_layer():
    found = climbs(samexp_sources())
    new = [f"{a} imports {b or '-'}: {why}" for a, b, why in found if (a, b) not in PENDING]
    gone = [f"{a} -> {b}" for a, b in PENDING if (a, b) not in {(x, y) for x, y, _ in found}]
    assert not new, "imports that climb the layers:\n" + "\n".join(new)
    assert not gone, "fixed, so drop from PENDING:\n" + "\n".join(gone)


def test_the_rule_sees_imports_at_any_depth_and_relative_ones():
    sources = {
        "samexp/data/reader.py": "def f():\n    from samexp.training import loop\n",
        "samexp/training/__init__.py": "",
        "samexp/training/loop.py": "",
        "samexp/config/x.py": "from ..tracking import tracker\n",
        "samexp/tracking/tracker.py": "",
        "samexp/models/m.py": "import samexp.data.reader\n",
        "samexp/predict/p.py": "from samexp import runner\n",
        "samexp/runner.py": "",
        "samexp/evaluate/e.py": "from samexp.predict import p\n",  # command to command: fine
    }
    assert [(a, b) for a, b, _ in climbs(sources)] == [
        ("samexp.config.x", "samexp.tracking.tracker"),
        ("samexp.data.reader", "samexp.training.loop"),
        ("samexp.models.m", "samexp.data.reader"),
        ("samexp.predict.p", "samexp.runner"),
    ]


def test_a_new_top_level_module_must_be_given_a_layer():
    (module, _, why), *_ = climbs({"samexp/newthing.py": "import os\n"})
    assert module == "samexp.newthing" and "no layer" in why


if __name__ == "__main__":  # the current climbs, listed or not
    for a, b, why in climbs(samexp_sources()):
        print(f"{a} -> {b or '-'}: {why}{'  (PENDING)' if (a, b) in PENDING else ''}")
