"""MLflow has one home, samexp/tracking/: nothing else imports mlflow, and the names samexp and
MLflow agree on (environment variables, run tags) are written once, in tracking/names.py."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from samexp.tracking import names
from tests.conftest import REPO

SOURCES = (REPO / "samexp", REPO / "hydra_plugins")


def modules() -> Iterator[tuple[str, ast.Module]]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text("utf-8"))


def top_level_imports(tree: ast.Module) -> set[str]:
    """The top-level packages a module imports, absolute imports only (`mlflow`, `sam2`, ...)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add((node.module or "").split(".")[0])
    return found


def imports_mlflow(tree: ast.Module) -> bool:
    return "mlflow" in top_level_imports(tree)


def literals(tree: ast.Module) -> Iterator[str]:
    """The module's string constants, docstrings left out (they may name a tag to explain it)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:  # fmt: skip
            yield node.value


def agreed_names() -> set[str]:
    """The values of tracking/names.py that only MLflow or samexp's runs use: environment
    variables and dotted tag names (a plain word such as `overrides` would match unrelated text)."""
    values = set()
    for name, value in vars(names).items():
        for text in value if isinstance(value, tuple) else (value,):
            if name.isupper() and isinstance(text, str) and ("." in text or text.isupper()):
                values.add(text)
    return values


def test_only_the_tracking_package_imports_mlflow():
    outside = [m for m, tree in modules() if imports_mlflow(tree) and not m.startswith("samexp/tracking/")]  # fmt: skip
    assert outside == [], f"import mlflow only in samexp/tracking/ (call samexp.tracking.store): {outside}"  # fmt: skip


def test_the_tracking_package_is_where_mlflow_is_imported():
    inside = {m for m, tree in modules() if imports_mlflow(tree)}
    assert inside == {"samexp/tracking/tracker.py", "samexp/tracking/store.py",
                      "samexp/tracking/pyfunc.py", "samexp/tracking/registry.py"}  # fmt: skip


def test_mlflow_names_are_written_once_in_tracking_names():
    agreed = agreed_names()
    assert {"SAMEXP_PARENT_RUN_ID", "mlflow.parentRunId", "samexp.state"} <= agreed
    retyped = {}
    for module, tree in modules():
        if module == "samexp/tracking/names.py":
            continue
        # a literal that is a name, or a search filter / f-string piece that spells one
        found = {n for text in literals(tree) for n in agreed if text == n or f"tags.`{n}`" in text or f"tags.{n} " in text}  # fmt: skip
        if found:
            retyped[module] = sorted(found)
    assert retyped == {}, f"import these from samexp.tracking.names: {retyped}"
