"""One `seed` makes a run: the trainer and model seeds follow it, the same seed repeats
a run exactly, and building a model never moves the RNG that `runner.seed_everything` seeded."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from samexp import runner
from samexp.adapters.base import trainable_parameters
from samexp.adapters.lora import LoraAdapter
from samexp.models.build import BaseModel, build_official, build_tiny
from samexp.tracking import results
from tests.conftest import compose_config


class _Applied(Exception):
    """Stops a run once its adapter is applied, carrying the trained parameters' initial values."""


def _initial_lora_a(make_config, monkeypatch, *overrides: str) -> dict[str, torch.Tensor]:
    """LoRA's A matrices as `runner.run` initialises them (the run stops right after)."""
    apply = LoraAdapter.apply

    def apply_and_stop(self, sam):
        apply(self, sam)
        params = trainable_parameters(sam).items()
        raise _Applied({n: p.detach().clone() for n, p in params if "lora_A" in n})

    monkeypatch.setattr(LoraAdapter, "apply", apply_and_stop)
    cfg = make_config("model=tiny", "adapter=lora", "tracking.enabled=false", *overrides)
    with pytest.raises(_Applied) as stopped:
        runner.run(cfg)
    return stopped.value.args[0]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_seed_sets_the_trainer_and_model_seeds_and_each_can_be_set_alone():
    cfg = compose_config(["model=tiny", "seed=3", "model.seed=5"])
    assert (cfg.seed, cfg.trainer.seed, cfg.model.seed) == (3, 3, 5)
    default = compose_config(["model=tiny"])
    assert default.seed == default.trainer.seed == default.model.seed == 0
    assert instantiate(default.model, _convert_="all").weights_id == "random:tiny:seed0"


@pytest.mark.parametrize("seeds", [("seed=1", "seed=2"), ("trainer.seed=1", "trainer.seed=2")])
def test_another_seed_initialises_the_lora_matrices_differently(make_config, monkeypatch, seeds):
    first, second = (_initial_lora_a(make_config, monkeypatch, s) for s in seeds)
    assert first and not any(torch.equal(first[k], second[k]) for k in first)
    assert _same(first, _initial_lora_a(make_config, monkeypatch, seeds[0]))


def test_the_same_seed_repeats_a_run_exactly(make_config, monkeypatch):
    saved: list[BaseModel] = []
    save_adapter = results.save_adapter

    def keep_model(path, base, adapter):
        saved.append(base)
        return save_adapter(path, base, adapter)

    monkeypatch.setattr(results, "save_adapter", keep_model)
    # augmentation draws from the global RNG, prompts and shuffling from generators of the seed
    overrides = ("model=tiny", "adapter=lora", "seed=1", "augment=default", "trainer.epochs=1",
                 "trainer.max_steps=2", "optim.lr=1e-2", "trainer.val_fraction=0",
                 "tracking.enabled=false", "cache.enabled=false")  # fmt: skip
    first, second = (runner.run(make_config(*overrides)) for _ in range(2))
    assert first == second
    assert saved[0].weights_id == saved[1].weights_id == "random:tiny:seed1"
    assert _same(saved[0].sam.state_dict(), saved[1].sam.state_dict())


@pytest.mark.parametrize(
    "build",
    [lambda: build_tiny(seed=7), lambda: build_official("vit_b", pretrained=False, seed=7)],
    ids=["tiny", "vit_b-random"],
)
def test_building_a_random_model_leaves_the_global_rng_as_it_was(build):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build()
    assert torch.equal(torch.get_rng_state(), before)
