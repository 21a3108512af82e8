"""One definition per option: the code's signature is the schema, the yaml only the difference.

Walks every yaml of every option group in conf/, and adds a throwaway adapter the way the docs'
recipe says (docs/adding-an-option.md: one module, one yaml) to show it is typed, range-checked,
trained and reloadable without an edit anywhere else.
"""

from __future__ import annotations

import functools
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Literal

import pytest
import torch
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

import samexp.adapters
from samexp.adapters.base import trainable_parameters
from samexp.adapters.io import load_adapter, save_adapter
from samexp.config import options as registry
from samexp.config.checks import OneOf, Range, checks_of
from samexp.config.errors import ConfigValueError
from samexp.config.options import options
from samexp.config.schema import SETTINGS, validate
from samexp.models.build import build_tiny
from samexp.tracking.finetuned import build_base
from tests.conftest import CONF_DIR, compose_config

OPTION_GROUPS = registry.groups()
YAMLS = sorted(
    (path.parent.name, path.stem)
    for group in OPTION_GROUPS
    for path in (CONF_DIR / group).glob("*.yaml")
)


def _own_keys(group: str, name: str) -> dict:
    """What the yaml itself writes, its defaults list aside."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))
    raw.pop("defaults", None)
    return raw


@functools.cache
def _composed(group: str, name: str) -> DictConfig:
    """The group's node as `group=name` composes it: once per yaml for the three tests that read
    it (each test only reads it)."""
    return compose_config([f"{group}={name}", "data_root=/data"])[group]


def _option_of(group: str, name: str) -> registry.Option:
    node = _composed(group, name)
    entry = registry.by_target(group, node._target_)
    assert entry is not None, f"conf/{group}/{name}.yaml builds {node._target_}, not an option"
    return entry


def test_every_option_group_has_its_yamls():
    assert {"model", "dataset", "adapter", "loss", "prompt", "scheduler", "optim", "augment",
            "tracking", "cache"} <= set(OPTION_GROUPS)  # fmt: skip
    assert {group for group, _ in YAMLS} == set(OPTION_GROUPS)


@pytest.mark.parametrize(("group", "name"), YAMLS)
def test_every_yaml_composes_against_the_schema_generated_from_its_code(group, name):
    entry = _option_of(group, name)
    node = _composed(group, name)
    assert OmegaConf.get_type(node) is entry.schema
    assert set(node) == {"_target_", *entry.arguments()}


@pytest.mark.parametrize(("group", "name"), YAMLS)
def test_every_yaml_writes_only_what_differs_from_the_code(group, name):
    entry = _option_of(group, name)
    defaults = entry.defaults()
    for key, value in _own_keys(group, name).items():
        assert key in defaults, (
            f"conf/{group}/{name}.yaml: {key} is not an argument of {entry.target}"
        )
        assert value != defaults[key], (
            f"conf/{group}/{name}.yaml restates {key}={value!r}, the default of {entry.target}: "
            "delete it (the code is the one place a default is written)"
        )


@pytest.mark.parametrize(("group", "name"), YAMLS)
def test_a_composed_option_holds_the_codes_defaults_where_its_yaml_is_silent(group, name):
    entry = _option_of(group, name)
    node = _composed(group, name)
    own = _own_keys(group, name)
    signature = inspect.signature(entry.obj).parameters
    for key in entry.arguments():
        if key in own or signature[key].default is inspect.Parameter.empty:
            continue
        default = signature[key].default
        expected = list(default) if isinstance(default, tuple) else default
        assert OmegaConf.to_container(node)[key] == expected, f"{group}.{key}"


@pytest.mark.parametrize("group", ["trainer", "paths"])
def test_settings_yamls_write_only_what_differs_from_their_dataclass(group):
    schema = OmegaConf.to_container(OmegaConf.structured(SETTINGS[group]))
    for key, value in _own_keys(group, "default").items():
        assert key in schema and value != schema[key], f"conf/{group}/default.yaml: {key}"


def test_settings_groups_are_the_only_hand_written_schemas():
    """trainer, paths and optuna have no constructor to generate them from; all else does."""
    assert set(SETTINGS) == {"trainer", "paths", "optuna"}
    assert not set(SETTINGS) & set(OPTION_GROUPS)


@pytest.mark.parametrize(("group", "name"), [(g, n) for g in OPTION_GROUPS for n in options(g)])
def test_every_generated_schema_is_one_omegaconf_can_type_check(group, name):
    entry = options(group)[name]
    node = OmegaConf.structured(entry.schema)  # raises on a type OmegaConf cannot hold
    assert node._target_ == entry.target


def test_a_range_in_the_signature_is_checked_for_a_config_and_for_a_call():
    with pytest.raises(ConfigValueError, match=r"adapter.rank=0: must be >= 1"):
        validate(compose_config(["adapter=lora", "adapter.rank=0", "data_root=/data"]))
    from samexp.adapters.lora import LoraAdapter

    with pytest.raises(ConfigValueError, match=r"adapter.rank=0: must be >= 1"):
        LoraAdapter(rank=0)


def test_a_literal_argument_accepts_only_its_choices():
    cfg = compose_config(["prompt=iterative", "prompt.start=circle", "data_root=/data"])
    with pytest.raises(ConfigValueError, match=r"prompt.start='circle': must be one of box, point"):
        validate(cfg)


def test_a_key_the_code_does_not_take_is_refused_at_composition():
    """`adapter.modules=5` used to pass: the hand-written schema had drifted from LoraAdapter."""
    with pytest.raises(ConfigCompositionException):
        compose_config(["adapter=lora", "adapter.modules=5"])


def test_torchs_optimizer_keeps_torchs_defaults_but_what_the_yaml_changes():
    optim = compose_config(["optim=adamw"]).optim
    assert optim.lr == 1e-4 and optim.fused is True  # the yaml
    assert list(optim.betas) == [0.9, 0.999] and optim.eps == 1e-8  # torch.optim.AdamW's own
    with pytest.raises(ConfigValueError, match="optim.lr=-1.0: must be > 0"):
        validate(compose_config(["optim.lr=-1", "data_root=/data"]))


def test_schema_generation_refuses_a_default_no_config_can_hold():
    def build(layer: torch.nn.Module = torch.nn.Identity()):  # noqa: B008
        return layer

    with pytest.raises(TypeError, match="a config default must be a plain value"):
        registry.schema_of_signature(build)


def test_checks_come_from_annotated_and_literal():
    def build(rank: Annotated[int, Range(low=1)] = 2, mode: Literal["a", "b"] = "a"):
        return rank, mode

    assert checks_of(registry.schema_of_signature(build)) == {"rank": Range(low=1),
                                                              "mode": OneOf(("a", "b"))}  # fmt: skip


# --- docs/adding-an-option.md's recipe: a throwaway adapter, one module and one yaml -----------
BITFIT = '''
"""BitFit: only the biases train (and, optionally, the norms)."""
from typing import Annotated

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.registry import register_adapter
from samexp.config.checks import POSITIVE


@register_adapter
class BitFitAdapter(Adapter):
    kind = "bitfit_throwaway"

    def __init__(self, norms: bool = False, lr_scale: Annotated[float, POSITIVE] = 1.0) -> None:
        self.norms, self.lr_scale = norms, lr_scale

    def apply(self, sam) -> None:
        freeze(sam)
        for name, p in sam.named_parameters():
            if name.endswith(".bias") or (self.norms and ".norm" in name):
                p.requires_grad_(True)
'''
YAML = "defaults:\n  - bitfit_throwaway_schema\nnorms: true\n"


@pytest.fixture
def throwaway(tmp_path: Path):
    """The two files, where a plugin folder would put them; removed again afterwards."""
    code, conf = tmp_path / "code", tmp_path / "conf"
    code.mkdir()
    (code / "bitfit_throwaway.py").write_text(textwrap.dedent(BITFIT))
    (conf / "adapter").mkdir(parents=True)
    (conf / "adapter" / "bitfit_throwaway.yaml").write_text(YAML)
    samexp.adapters.__path__.append(str(code))
    try:
        yield f"hydra.searchpath=[file://{conf}]"
    finally:
        samexp.adapters.__path__.remove(str(code))
        registry._OPTIONS["adapter"].pop("bitfit_throwaway", None)
        sys.modules.pop("samexp.adapters.bitfit_throwaway", None)
        ConfigStore.instance().repo.get("adapter", {}).pop("bitfit_throwaway_schema.yaml", None)


def test_a_new_adapter_is_one_module_and_one_yaml_typed_and_range_checked(throwaway):
    registry.load_all()
    cfg = compose_config(["adapter=bitfit_throwaway", throwaway, "data_root=/data"])
    assert cfg.adapter.norms is True and cfg.adapter.lr_scale == 1.0
    with pytest.raises(ConfigCompositionException):
        compose_config(["adapter=bitfit_throwaway", throwaway, "adapter.norms=maybe"])
    bad = compose_config(
        ["adapter=bitfit_throwaway", throwaway, "adapter.lr_scale=0", "data_root=/d"]
    )
    with pytest.raises(ConfigValueError, match="adapter.lr_scale=0.0: must be > 0"):
        validate(bad)


@pytest.mark.slow  # a training run
def test_a_new_adapter_trains_its_parameters_and_reloads_from_its_file(
    throwaway, tmp_path, make_config
):
    from samexp.runner import run

    registry.load_all()
    cfg = make_config("model=tiny", "adapter=bitfit_throwaway", throwaway, "trainer.epochs=1",
                      "tracking.enabled=false")  # fmt: skip
    result = run(cfg)
    assert result.metrics["train/steps"] > 0
    weights = tmp_path / "out" / "adapter.safetensors"
    base = build_base({"base": {"arch": "tiny", "weights_id": "random:tiny:seed0",
                                "build_kwargs": {"seed": 0}}})  # fmt: skip
    adapter = load_adapter(weights, base)
    assert adapter.kind == "bitfit_throwaway" and adapter.hparams()["norms"] is True
    trained = trainable_parameters(base.sam)
    assert trained and all(n.endswith(".bias") or ".norm" in n for n in trained)
    again = tmp_path / "again.safetensors"
    save_adapter(again, base, adapter)
    fresh = build_tiny(seed=0)
    load_adapter(again, fresh)  # a file naming the new kind loads like any other
    assert torch.equal(fresh.sam.mask_decoder.iou_prediction_head.layers[0].bias,
                       base.sam.mask_decoder.iou_prediction_head.layers[0].bias)  # fmt: skip
