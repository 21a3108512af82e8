"""A sweep's parent run holds one summary: one trial table, one set of plots and one best trial,
whichever sweeper ran it (the Optuna sweeper adds only what the study alone knows)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hydra_plugins.samexp_optuna_sweeper.report import write_results
from samexp.sweeps.callback import summarize
from samexp.tracking.names import OVERRIDES, PARENT, STATE
from samexp.tracking.sweep_parent import Parent

RANKS = {2: 0.5, 4: 0.7, 8: 0.6}  # adapter.rank -> val/iou of its trial


def artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for entry in client.list_artifacts(run_id, folder):
        found |= artifacts(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


@pytest.fixture
def parent(tmp_path: Path, store) -> tuple[MlflowClient, str]:
    """An Optuna study of three trials and its MLflow parent with a finished child per trial,
    summarized as a sweep ends: the sweeper's results first, then the callback's summary."""
    client, experiment, parent = store
    study = optuna.create_study(study_name="toy", direction="maximize")
    for number, (rank, iou) in enumerate(RANKS.items()):
        trial = optuna.trial.create_trial(
            params={"adapter.rank": rank}, value=iou,
            distributions={"adapter.rank": optuna.distributions.CategoricalDistribution(list(RANKS))},
        )  # fmt: skip
        study.add_trial(trial)
        tags = {PARENT: parent, STATE: "COMPLETE", OVERRIDES: f"model=tiny adapter.rank={rank}"}
        child = client.create_run(experiment, run_name=f"lora#t{number}", tags=tags).info.run_id
        client.log_metric(child, "val/iou", iou)
        client.set_terminated(child, "FINISHED")
    write_results(study, tmp_path / "multirun", None, "maximize")
    summarize(Parent(client, parent), "val/iou", "max")
    return client, parent


def test_a_sweeps_parent_has_one_trial_table_and_one_plot_per_view(parent):
    client, run_id = parent
    assert artifacts(client, run_id) == {
        "sweep/trials.csv",  # the one table: every child, its state, swept params and objective
        "sweep/val_iou_vs_adapter.rank.png",  # the objective against each swept parameter
        "sweep/optimization_history.png",  # the study's own: the search over time
        "sweep/param_importances.png",
    }


def test_a_sweeps_parent_has_one_best_trial(parent):
    client, run_id = parent
    run = client.get_run(run_id)
    best = max(RANKS, key=RANKS.get)
    assert run.data.metrics["val/iou"] == pytest.approx(RANKS[best])
    assert [k for k in run.data.metrics if "best" in k] == []  # no second best value
    assert {k: v for k, v in run.data.tags.items() if k.startswith("best.")} == {"best.adapter.rank": str(best)}  # fmt: skip
    assert [k for k in run.data.tags if "best" in k and not k.startswith("best.")] == ["best_run_id"]  # fmt: skip
    assert [k for k in run.data.params if "best" in k] == []  # the best is tagged, never a param
    assert client.get_run(run.data.tags["best_run_id"]).data.metrics["val/iou"] == RANKS[best]
    # what only the study knows: which study, where it is stored, how many trials it counts
    assert run.data.params["study.name"] == "toy" and run.data.tags["study.n_trials"] == "3"
