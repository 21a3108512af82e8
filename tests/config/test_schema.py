"""Every config option composes and instantiates; a wrong key or type fails at startup, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from samexp.adapters.base import Adapter
from samexp.config.paths import samexp_home
from samexp.data.frame import Pipeline
from samexp.data.splits import DatasetSplits
from samexp.models.build import BaseModel
from samexp.prompts.base import PromptStrategy
from samexp.training.losses import SamLoss
from tests.conftest import CONF_DIR, compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_default_config_is_lora_on_rings_with_vit_b():
    cfg = compose_config([])
    assert cfg.model.arch == "vit_b"
    assert cfg.dataset.root.endswith("/rings") and cfg.dataset.name is None  # named "rings"
    assert cfg.adapter._target_.endswith("LoraAdapter")
    assert list(cfg.adapter.qkv_parts) == ["q", "v"]
    assert cfg.tracking.tracking_uri == f"sqlite:///{samexp_home()}/mlruns/mlflow.db"


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h"])
def test_official_models_compose_with_their_arch(arch):
    cfg = compose_config([f"model={arch}"])
    assert cfg.model.arch == arch and cfg.model.pretrained is True


def test_official_model_builds_without_download_when_not_pretrained():
    cfg = compose_config(["model=vit_b", "model.pretrained=false"])
    base = instantiate(cfg.model, _convert_="all")
    assert isinstance(base, BaseModel) and base.img_size == 1024
    assert base.weights_id == "random:vit_b:seed0"


def test_tiny_model_instantiates_small_and_fast():
    base = instantiate(compose_config(["model=tiny"]).model, _convert_="all")
    assert base.img_size == 256
    assert sum(p.numel() for p in base.sam.parameters()) < 500_000


@pytest.mark.parametrize("name", options("adapter"))
def test_every_adapter_option_instantiates(name):
    assert isinstance(
        instantiate(compose_config([f"adapter={name}"]).adapter, _convert_="all"), Adapter
    )


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_option_instantiates(name):
    assert isinstance(instantiate(compose_config([f"loss={name}"]).loss), SamLoss)


@pytest.mark.parametrize("name", options("prompt"))
def test_every_prompt_option_instantiates(name):
    assert isinstance(instantiate(compose_config([f"prompt={name}"]).prompt), PromptStrategy)


@pytest.mark.parametrize("name", options("dataset"))
def test_every_dataset_option_composes_and_names_a_callable_factory(name):
    from hydra.utils import get_method

    cfg = compose_config([f"dataset={name}"])
    assert callable(get_method(cfg.dataset._target_))


def test_rings_dataset_option_loads_its_splits(rings_root: Path):
    cfg = compose_config(["dataset=rings", f"data_root={rings_root.parent}"])
    splits = instantiate(cfg.dataset, pipeline=Pipeline(256), _convert_="object")
    assert isinstance(splits, DatasetSplits) and len(splits.train) == 8 and len(splits.test) == 2


@pytest.mark.parametrize("group", ["optim", "trainer", "tracking"])
def test_every_remaining_group_option_composes(group):
    for name in options(group):
        assert compose_config([f"{group}={name}"])[group] is not None


def test_optimizer_instantiates_over_given_parameters(tiny):
    optimizer = instantiate(compose_config([]).optim, params=list(tiny.sam.parameters()))
    assert optimizer.defaults["lr"] == pytest.approx(1e-4)


def test_unknown_key_fails_at_composition_naming_it():
    with pytest.raises(ConfigCompositionException) as e:
        compose_config(["adapter.rnak=4"])
    assert "rnak" in str(e.value.__cause__) and "LoraAdapterConfig" in str(e.value.__cause__)


def test_force_appended_unknown_key_fails_when_the_runner_builds_it():
    from samexp.config.errors import SamexpError
    from samexp.config.instantiate import build

    cfg = compose_config(["+adapter.rnak=4"])  # `+` forces the key past the schema...
    with pytest.raises(
        SamexpError, match="rnak"
    ):  # ...so the constructor refuses it, before any model
        build(cfg.adapter)


def test_wrong_type_fails_at_composition_naming_the_key():
    with pytest.raises(ConfigCompositionException) as e:
        compose_config(["trainer.epochs=ten"])
    assert isinstance(e.value.__cause__, ValidationError)
    assert "trainer.epochs" in str(e.value.__cause__)


def test_device_accepts_only_auto_cpu_cuda_and_mps():
    assert compose_config(["trainer.device=cpu"]).trainer.device.value == "cpu"
    assert compose_config(["trainer.device=mps"]).trainer.device.value == "mps"
    with pytest.raises(ConfigCompositionException):
        compose_config(["trainer.device=tpu"])


def test_data_root_follows_samexp_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMEXP_DATA", str(tmp_path))
    assert compose_config([]).dataset.root == f"{tmp_path}/rings"


@pytest.mark.parametrize("name", options("scheduler"))
def test_every_scheduler_option_builds_a_schedule(name, tiny):
    from samexp.training.schedulers import Schedule

    optimizer = instantiate(compose_config([]).optim, params=list(tiny.sam.parameters()))
    schedule = instantiate(
        compose_config([f"scheduler={name}"]).scheduler, optimizer=optimizer, total_steps=10
    )
    assert isinstance(schedule, Schedule)


def test_augmentation_is_off_by_default_and_instantiates_when_chosen():
    from samexp.data.augment import Augment

    assert compose_config([]).augment is None
    assert isinstance(
        instantiate(compose_config(["augment=default"]).augment, _convert_="all"), Augment
    )


def test_eval_prompt_defaults_to_the_training_prompt_and_can_be_chosen_separately():
    assert compose_config([]).eval_prompt is None
    cfg = compose_config(["prompt=box", "+prompt@eval_prompt=box", "eval_prompt.jitter=0"])
    assert cfg.eval_prompt.jitter == 0 and cfg.prompt.jitter == 0.1


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_and_changes_something(name):
    assert compose_config([f"experiment={name}"]) != compose_config([])


@pytest.mark.parametrize("name", options("hparams_search"))
def test_every_search_composes_alone_and_sweeps_keys_the_config_has(name):
    cfg = compose_with_hydra([f"hparams_search={name}"])
    assert cfg.hydra.sweeper.params
    assert all(OmegaConf.select(cfg, key) is not None for key in cfg.hydra.sweeper.params)


@pytest.mark.parametrize("search", options("hparams_search"))
@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_search_composes_over_every_experiment_and_wins_where_both_set_a_key(
    experiment, search
):
    alone, over = (
        compose_with_hydra([f"hparams_search={search}"]),
        compose_with_hydra([f"experiment={experiment}", f"hparams_search={search}"]),
    )
    assert over.hydra.sweeper._target_ == alone.hydra.sweeper._target_
    assert over.hydra.sweeper.params == alone.hydra.sweeper.params
    if "adapter" not in alone.hydra.sweeper.params:  # a search over the adapter picks it itself
        assert over.adapter._target_ == alone.adapter._target_  # the space needs its adapter
    assert over.objective == alone.objective


def test_a_search_over_an_experiment_keeps_the_experiments_other_keys():
    cfg = compose_with_hydra(["experiment=smoke", "hparams_search=lora_rank_lr"])
    assert cfg.model.arch == "tiny" and cfg.trainer.epochs == 30  # the experiment's
    assert cfg.adapter._target_.endswith("LoraAdapter")  # the search's, over smoke's decoder
    assert cfg.hydra.sweeper.study_name == "lora_rank_lr-rings-tiny"


def test_a_study_is_named_after_the_data_folder_when_dataset_root_moves(tmp_path):
    cfg = compose_with_hydra(["experiment=smoke", "hparams_search=lora_rank_lr",
                              f"dataset.root={tmp_path / 'bottles'}"])  # fmt: skip
    assert cfg.hydra.sweeper.study_name == "lora_rank_lr-bottles-tiny"
    named = compose_with_hydra(["experiment=smoke", "hparams_search=lora_rank_lr",
                                f"dataset.root={tmp_path / 'bottles'}", "dataset.name=caps"])  # fmt: skip
    assert named.hydra.sweeper.study_name == "lora_rank_lr-caps-tiny"
