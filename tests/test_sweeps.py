"""Sweeps end to end through `python -m samexp -m`: grids and Optuna studies as one MLflow parent
run each, resumable studies, pruning, and parallel trials that lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, data_root

pytestmark = pytest.mark.slow

FAST = ["model=tiny", "trainer.epochs=2", "trainer.max_steps=2", "trainer.batch_size=4"]


def sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "samexp", "-m", *FAST, f"data_root={data_root()}",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_root={tmp_path}/artifacts",
        f"hydra.sweep.dir={tmp_path}/multirun/{len(list(tmp_path.glob('multirun/*')))}",
        *overrides,
    ]  # fmt: skip
    env = {**os.environ, "SAMEXP_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SAMEXP_PARENT_RUN_ID", None)
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def runs(tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("samexp")
    everything = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in everything if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in everything if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_a_2x2_grid_is_four_child_runs_under_one_parent_with_the_sweep_summary(tmp_path):
    sweep(tmp_path, "adapter.rank=2,4", "optim.lr=1e-3,1e-2", "objective=best/val/iou")
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {(c.data.params["adapter.rank"], c.data.params["optim.lr"]) for c in children} == {
        ("2", "0.001"), ("2", "0.01"), ("4", "0.001"), ("4", "0.01")
    }
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.info.run_name for c in children) == [
        "lora-r2-rings-tiny#0", "lora-r2-rings-tiny#1", "lora-r4-rings-tiny#2", "lora-r4-rings-tiny#3"
    ]
    # the parent holds the best child's swept params and objective, the table and the plots
    best = max(children, key=lambda c: c.data.metrics["best/val/iou"])
    assert parent.data.metrics["best/val/iou"] == pytest.approx(best.data.metrics["best/val/iou"])
    assert parent.data.params["best.adapter.rank"] == best.data.params["adapter.rank"]
    assert "best.model" not in parent.data.params  # not swept: context, not a result
    assert parent.data.metrics["sweep/complete"] == 4
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/trials.csv", "sweep/best_val_iou_vs_adapter.rank.png", "sweep/best_val_iou_vs_optim.lr.png"} <= artifacts
