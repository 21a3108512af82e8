"""The commands' settings come from one definition each, like the options: the signature of the code
that does the work (export, the sweeper, SamAutomaticMaskGenerator) or the one dataclass a command
receives (predict, evaluate); their yaml restates no default; their ranges refuse in a run's words."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf
from segment_anything import SamAutomaticMaskGenerator

from hydra_plugins.samexp_optuna_sweeper.config import SamexpOptunaSweeperConf
from hydra_plugins.samexp_optuna_sweeper.sweeper import OptunaSweeper
from samexp.config.errors import ConfigValueError
from samexp.config.schema import outside_ranges
from samexp.evaluate.saved import EvaluateConfig
from samexp.export import ExportConfig, export
from samexp.predict.config import AutoConfig, PredictConfig
from tests.conftest import CONF_DIR


def _signature_defaults(obj, *leave_out: str) -> dict:
    parameters = inspect.signature(obj).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in {"self", *leave_out}}


def _schema_defaults(schema: type, *leave_out: str) -> dict:
    node = OmegaConf.to_container(OmegaConf.structured(schema))
    return {k: v for k, v in node.items() if k not in leave_out}


def test_export_settings_are_the_signature_of_export():
    assert _schema_defaults(ExportConfig) == _signature_defaults(export)


def test_the_sweepers_settings_are_its_signature_with_hydras_keys():
    hydra_keys = ("_target_", "_recursive_", "defaults")
    expected = {**_signature_defaults(OptunaSweeper), "params": {}}
    assert _schema_defaults(SamexpOptunaSweeperConf, *hydra_keys) == expected


def test_auto_mask_settings_are_the_stock_generators_defaults_plus_max_side():
    stock = _signature_defaults(SamAutomaticMaskGenerator, "model", "point_grids")
    assert AutoConfig().generator_arguments() == stock
    assert PredictConfig().auto == AutoConfig() and AutoConfig().max_side is None


@pytest.mark.parametrize(
    ("yaml", "schema"), [("predict", PredictConfig), ("evaluate", EvaluateConfig)]
)
def test_a_commands_yaml_restates_no_default_of_its_dataclass(yaml, schema):
    own = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{yaml}.yaml"))
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    for key, value in own.items():
        if key not in ("defaults", "hydra"):
            assert key in defaults and value != defaults[key], f"conf/{yaml}.yaml: {key}"


def test_a_commands_ranges_are_checked_at_any_depth_in_a_runs_words():
    cfg = PredictConfig(auto=AutoConfig(points_per_side=0, max_side=10))
    cfg.overlay.alpha = 1.5
    assert outside_ranges(cfg) == [
        "overlay.alpha=1.5: must be in [0, 1]",
        "auto.points_per_side=0: must be >= 1",
        "auto.max_side=10: must be >= 64 (pixels, or null)",
    ]


def test_the_sweeper_refuses_its_own_settings_out_of_range_naming_them():
    with pytest.raises(ConfigValueError, match=r"hydra.sweeper.n_jobs=0: must be >= 1"):
        OptunaSweeper(n_jobs=0)
    with pytest.raises(ConfigValueError, match=r"hydra.sweeper.direction='max': must be one of"):
        OptunaSweeper(direction="max")


def test_no_schema_declares_a_range_outside_its_type():
    """One way to declare a range: the field's `Annotated` type, never dataclass field metadata."""
    for schema in (
        PredictConfig,
        AutoConfig,
        EvaluateConfig,
        ExportConfig,
        SamexpOptunaSweeperConf,
    ):
        assert not [f.name for f in dataclasses.fields(schema) if "check" in f.metadata], schema
