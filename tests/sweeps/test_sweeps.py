"""Sweeps end to end through `python -m samexp -m`: grids and Optuna studies as one MLflow parent
run each, resumable studies, pruning, and parallel trials that lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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
        ("2", "0.001"),
        ("2", "0.01"),
        ("4", "0.001"),
        ("4", "0.01"),
    }
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.info.run_name for c in children) == [
        "lora-r2-rings-tiny#0",
        "lora-r2-rings-tiny#1",
        "lora-r4-rings-tiny#2",
        "lora-r4-rings-tiny#3",
    ]
    # the parent holds the best child's swept params and objective, the table and the plots
    best = max(children, key=lambda c: c.data.metrics["best/val/iou"])
    assert parent.data.metrics["best/val/iou"] == pytest.approx(best.data.metrics["best/val/iou"])
    assert parent.data.tags["best.adapter.rank"] == best.data.params["adapter.rank"]
    assert "best.model" not in parent.data.tags  # not swept: context, not a result
    assert parent.data.metrics["sweep/complete"] == 4
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {
        "sweep/trials.csv",
        "sweep/best_val_iou_vs_adapter.rank.png",
        "sweep/best_val_iou_vs_optim.lr.png",
    } <= artifacts


def optuna_sweep(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return sweep(tmp_path, "hparams_search=lora_rank_lr", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
                 "hydra.sweeper.study_name=test-study", *overrides)  # fmt: skip


def study(tmp_path: Path):
    import optuna

    return optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path}/optuna.db")


def test_an_optuna_study_persists_and_a_second_invocation_resumes_it_to_five_trials(tmp_path):
    from optuna.trial import TrialState

    optuna_sweep(tmp_path, "hydra.sweeper.n_trials=3")
    assert [t.state for t in study(tmp_path).trials] == [TrialState.COMPLETE] * 3
    optuna_sweep(tmp_path, "hydra.sweeper.n_trials=5")
    trials = study(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4] and all(
        t.state == TrialState.COMPLETE for t in trials
    )
    assert all(
        t.params["adapter.rank"] in (2, 4, 8, 16, 32, 64) and 1e-5 <= t.params["optim.lr"] <= 1e-2
        for t in trials
    )
    _, parents, children = runs(tmp_path)
    assert len(parents) == 1, "a resumed study keeps its one parent run"
    assert sorted(c.info.run_name.rsplit("#", 1)[1] for c in children) == [
        "t0",
        "t1",
        "t2",
        "t3",
        "t4",
    ]
    # each trial's value is what its MLflow run measured
    by_trial = {
        c.info.run_name.rsplit("#t", 1)[1]: c.data.metrics["best/val/iou"] for c in children
    }
    assert all(by_trial[str(t.number)] == pytest.approx(t.value) for t in trials)
    assert parents[0].data.metrics["best/val/iou"] == pytest.approx(study(tmp_path).best_value)
    best = max(trials, key=lambda t: t.value)  # the second part's best, when it moved
    assert parents[0].data.tags["best.adapter.rank"] == str(best.params["adapter.rank"])


def test_pruned_trials_are_recorded_as_pruned_in_the_study_and_in_mlflow(tmp_path):
    from optuna.trial import TrialState

    # a threshold no IoU can reach: every trial is pruned at its first report
    optuna_sweep(tmp_path, "hydra.sweeper.n_trials=2", "trainer.epochs=6", "trainer.max_steps=null",
                 "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.5")  # fmt: skip
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in trials)  # stopped after epoch 1 of 3
    _, parents, children = runs(tmp_path)
    assert {(c.info.status, c.data.tags["samexp.state"]) for c in children} == {
        ("KILLED", "PRUNED")
    }
    assert parents[0].data.metrics["sweep/pruned"] == 2


def test_two_trials_in_parallel_lose_no_trial_and_no_run(tmp_path):
    from optuna.trial import TrialState

    optuna_sweep(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2")  # fmt: skip
    trials = study(tmp_path).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    _, parents, children = runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.info.run_name.rsplit("#t", 1)[1] for c in children) == ["0", "1", "2", "3"]


@pytest.fixture
def start_worker():
    """Starts sweep processes; any still running when the test ends is killed."""
    started: list[subprocess.Popen] = []

    def start(tmp_path: Path, name: str, *overrides: str) -> subprocess.Popen:
        started.append(worker(tmp_path, name, *overrides))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def worker(tmp_path: Path, name: str, *overrides: str) -> subprocess.Popen:
    """One sweep process on the shared study, MLflow store and data; its own sweep folder."""
    args = [
        sys.executable, "-m", "samexp", "-m", *FAST, f"data_root={data_root()}",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_root={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/multirun/{name}",
        "hparams_search=lora_rank_lr", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        "hydra.sweeper.study_name=test-study", *overrides,
    ]  # fmt: skip
    # one thread each: two torch processes spinning two threads apiece on two cores crawl
    env = {**os.environ, "SAMEXP_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SAMEXP_PARENT_RUN_ID", None)
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def running_trial_with_open_run(tmp_path: Path, pid: int) -> int | None:
    """The number of a trial the worker with this pid runs whose MLflow child is open."""
    from optuna.trial import TrialState

    from hydra_plugins.samexp_optuna_sweeper.workers import WORKER
    from samexp.tracking.store_lock import store_lock

    # the workers' own locks: a fresh database is read only once its creator has made it
    with store_lock(f"sqlite:///{tmp_path}/optuna.db"), store_lock(f"sqlite:///{tmp_path}/mlflow.db"):  # fmt: skip
        try:
            trials = study(tmp_path).get_trials(states=(TrialState.RUNNING,))
            _, _, children = runs(tmp_path)
        except Exception:  # the study or the experiment is not there yet
            return None
    open_runs = {
        c.info.run_name.rsplit("#t", 1)[-1] for c in children if c.info.status == "RUNNING"
    }
    for t in trials:
        if t.user_attrs.get(WORKER, "").endswith(f":{pid}") and str(t.number) in open_runs:
            return t.number
    return None


def wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s")


def test_two_workers_one_killed_mid_trial_and_restarted_reach_exactly_n_trials(
    tmp_path, start_worker
):
    from optuna.trial import TrialState

    from hydra_plugins.samexp_optuna_sweeper.workers import RETRY_OF, SURPLUS

    shared = ("hydra.sweeper.n_trials=6", "trainer.epochs=6", "trainer.max_steps=null",
              "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4")  # fmt: skip
    # two workers started together; each its own sampler seed, or they propose the same points
    a = start_worker(tmp_path, "a", *shared, "hydra.sweeper.sampler.seed=1")
    # b's first trial is one of the study's first two, never pruned: 30 epochs leave time to
    # kill it mid-trial
    b = start_worker(tmp_path, "b", *shared, "hydra.sweeper.sampler.seed=2", "trainer.epochs=30")
    killed = wait_for(lambda: running_trial_with_open_run(tmp_path, b.pid), timeout=60)
    b.kill()
    b.wait()
    restarted = start_worker(tmp_path, "b-again", *shared, "hydra.sweeper.sampler.seed=3")
    for process, name in ((a, "a"), (restarted, "b-again")):
        assert process.wait(timeout=120) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]

    trials = study(tmp_path).trials
    states = [t.state for t in trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 6
    assert TrialState.RUNNING not in states
    assert trials[killed].state == TrialState.FAIL and not trials[killed].user_attrs.get("error")
    assert [t.user_attrs.get(RETRY_OF) for t in trials].count(killed) == 1
    # one child per trial that ran (a surplus trial never ran), in its trial's state
    ran = [t for t in trials if t.state != TrialState.WAITING and SURPLUS not in t.user_attrs]
    _, parents, children = runs(tmp_path)
    assert len(parents) == 1, "both workers nest under one parent"
    by_trial = {c.data.tags["optuna.trial_number"]: c for c in children}
    assert len(children) == len(by_trial) == len(ran)
    expected = {"COMPLETE": ("FINISHED", "COMPLETE"), "PRUNED": ("KILLED", "PRUNED"),
                "FAIL": ("KILLED", "INTERRUPTED")}  # fmt: skip
    for t in ran:
        child = by_trial[str(t.number)]
        assert child.data.tags["optuna.state"] == t.state.name
        assert (child.info.status, child.data.tags["samexp.state"]) == expected[t.state.name]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    counts = {k: parent.data.metrics[f"sweep/{k}"] for k in ("complete", "pruned", "interrupted", "failed", "running")}  # fmt: skip
    assert counts == {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "interrupted": len([t for t in ran if t.state == TrialState.FAIL]),
        "failed": 0,
        "running": 0,
    }
