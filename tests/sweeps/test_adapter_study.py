"""`hparams_search=adapter_study`: every registered adapter × training seeds, on one split with
one set of evaluation prompts, as a grid study that a rerun resumes; each run logs what the
report reads (costs, per-image figures). The contract is in the yaml's header."""

from __future__ import annotations

import json

import pytest

from samexp.adapters.registry import registered
from tests.config.test_schema import compose_with_hydra
from tests.sweeps.test_sweeps import runs, sweep

STUDY = ["hparams_search=adapter_study", "hydra.sweeper.study_name=adapter-study-test",
         "adapter=lora,decoder"]  # fmt: skip
COSTS = ("train/seconds_per_step", "train/wall_s", "train/peak_memory_mb", "params/trainable")
ROW = {"name", "instance", "category", "baseline_iou", "final_iou", "baseline_dice", "final_dice"}


def test_the_study_sweeps_every_registered_adapter_over_training_seeds_only():
    cfg = compose_with_hydra(["experiment=smoke", "hparams_search=adapter_study"])
    sweeper = cfg.hydra.sweeper
    assert sweeper.params.adapter == f"choice({','.join(registered())})"
    assert sweeper.params["trainer.seed"] == "range(0,3)"
    assert sweeper.sampler._target_.endswith("grid.GridSampler")
    assert sweeper.pruner._target_ == "optuna.pruners.NopPruner"  # every method trains fully
    assert sweeper.study_name == "adapter_study-rings-tiny"
    # the split and the evaluation prompts follow the study's `seed`, not the swept trainer.seed
    moved = compose_with_hydra(["hparams_search=adapter_study", "trainer.seed=2"]).trainer
    assert (moved.seed, moved.split_seed, moved.eval_seed) == (2, 0, 0)


@pytest.mark.slow
def test_a_two_by_two_study_resumes_to_every_point_and_each_run_logs_what_the_report_reads(
    tmp_path,
):
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"
    sweep(tmp_path, *STUDY, storage, "trainer.seed=range(0,1)")  # the first part: seed 0
    sweep(tmp_path, *STUDY, storage, "trainer.seed=range(0,2)")  # resumed: only seed 1 runs
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.data.tags["samexp.sweep_key"] == "study:adapter-study-test"
    assert parent.data.tags["study.n_trials"] == "4"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    points = {(c.info.run_name.split("-")[0], c.data.params["trainer.seed"]) for c in children}
    assert points == {("lora", "0"), ("lora", "1"), ("decoder", "0"), ("decoder", "1")}
    baselines = set()
    for child in children:
        assert child.data.tags["samexp.state"] == "COMPLETE"
        assert (child.data.params["trainer.split_seed"], child.data.params["trainer.eval_seed"]) == ("0", "0")  # fmt: skip
        assert all(child.data.metrics[name] > 0 for name in COSTS)
        rows = json.loads(
            open(client.download_artifacts(child.info.run_id, "metrics/per_image.json")).read()
        )
        assert rows and all(set(r) == ROW for r in rows)
        baselines.add(json.dumps([(r["name"], r["instance"], r["baseline_iou"]) for r in rows]))
    assert len(baselines) == 1, "zero-shot is the same in every run: one split, one set of prompts"
