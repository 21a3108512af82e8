"""The documentation site: the generated configuration reference leaves nothing out, and the nav
names only pages that exist. (`make docs` builds the whole site, strictly, in CI.)"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml

from samexp.config.options import groups, options
from samexp.config.schema import SETTINGS, Config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("config_reference",
                                                  DOCS / "hooks" / "config_reference.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> str:
    return _hook().render()


def _nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def _mkdocs() -> dict:
    # mkdocs.yml may hold !!python tags (none today): read it as plain data either way
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)


def test_reference_names_every_option_group_and_settings_group(reference):
    conf_groups = [p.name for p in (ROOT / "samexp" / "conf").iterdir() if p.is_dir()]
    for group in {*groups(), *SETTINGS, *conf_groups} - {"hydra"}:
        assert f"`{group}`" in reference, group


def test_reference_names_every_option_and_every_argument(reference):
    for group in groups():
        for name, entry in options(group).items():
            section = reference.split(f"{{#{group}-{name}}}")
            assert len(section) == 2, f"{group}={name} has no section of its own"
            body = section[1].split("\n### ")[0]
            for argument in entry.arguments():
                assert f"| `{argument}` |" in body, f"{group}.{argument} missing"


def test_reference_names_every_settings_field_and_top_level_key(reference):
    for group, schema in SETTINGS.items():
        for f in dataclasses.fields(schema):
            assert f"| `{f.name}` |" in reference, f"{group}.{f.name} missing"
    for f in dataclasses.fields(Config):
        assert f"`{f.name}`" in reference, f.name


def test_reference_shows_every_shipped_yaml(reference):
    for path in (ROOT / "samexp" / "conf").rglob("*.yaml"):
        if path.name == "config.yaml":
            continue
        assert f"samexp/conf/{path.relative_to(ROOT / 'samexp' / 'conf').as_posix()}" in reference


def test_every_nav_page_exists():
    config = _mkdocs()
    pages = _nav_pages(config["nav"])
    assert pages, "mkdocs.yml has no nav"
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"nav names pages that do not exist: {missing}"
    assert _hook().PAGE in pages


def test_every_page_is_in_the_nav():
    pages = set(_nav_pages(_mkdocs()["nav"]))
    found = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not found - pages, f"pages outside the nav: {sorted(found - pages)}"
