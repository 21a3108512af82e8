"""The samexp_optuna Hydra sweeper on a tiny standalone Hydra app run in a subprocess: studies
resume, pruned and failed trials are recorded as such, a live worker's trials are left alone and a
dead one's are failed and run again, an interrupted job stops the sweep, jobs get their trial, and
parallel batches through the joblib launcher lose nothing."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.utils import get_class, instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hydra_plugins.samexp_optuna_sweeper.config import PRUNERS, SAMPLERS
from hydra_plugins.samexp_optuna_sweeper.report import log_study
from hydra_plugins.samexp_optuna_sweeper.workers import (
    INTERRUPTED,
    RETRY_OF,
    WORKER,
    Heartbeat,
    open_storage,
)
from samexp.config.errors import SamexpError
from samexp.sweeps.callback import plot_objective
from samexp.sweeps.pruning import trial_id
from samexp.tracking.sweep_parent import Parent
from tests.conftest import REPO

C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL

APP = """
import json
import math
import time

import hydra
from omegaconf import OmegaConf

from samexp.config.errors import Interrupted
from samexp.sweeps.pruning import reporter_from_config


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg):
    trial_cfg = OmegaConf.to_container(cfg.optuna)
    with open(cfg.record, "a") as f:
        f.write(json.dumps({"x": cfg.x, "y": cfg.y, "z": cfg.z, "shape": cfg.shape.name,
                            "optuna": trial_cfg}) + "\\n")
    value = cfg.x + cfg.y
    report = reporter_from_config(**trial_cfg)  # re-attach to the trial, as samexp's jobs do
    if report is not None:
        report(value, 0)  # raises optuna.TrialPruned when the pruner says so
    time.sleep(cfg.sleep)
    if cfg.optuna.trial_number in cfg.fail_on:
        raise RuntimeError("boom")
    if cfg.optuna.trial_number in cfg.nan_on:
        return math.nan
    if cfg.optuna.trial_number in cfg.interrupt_on:
        raise Interrupted("SIGTERM", 143, "epoch 1 step 2", "rerun the sweep")
    return value


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - shape: circle
  - override hydra/sweeper: samexp_optuna
  - override hydra/sweeper/pruner: nop
  - _self_
x: 0.0
y: 0
z: 0
record: ???
fail_on: []
nan_on: []
interrupt_on: []
sleep: 0
optuna: {storage: null, study_name: null, trial_number: null, pruner: null}
hydra:
  job:
    chdir: true  # jobs run elsewhere: the relative storage path must still reach the study
  sweeper:
    storage: sqlite:///studies/optuna.db
    study_name: toy
    n_trials: 3
    params:
      x: interval(-1, 1)
      y: choice(1, 2, 3)
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "config.yaml").write_text(CONFIG)
    for shape in ("circle", "square"):
        (tmp_path / "shape").mkdir(exist_ok=True)
        (tmp_path / "shape" / f"{shape}.yaml").write_text(f"name: {shape}\n")
    return tmp_path


def sweep_command(app: Path, *overrides: str, env: dict[str, str] | None = None):
    runs = len(list(app.glob("multirun/*")))
    args = [sys.executable, "app.py", "-m", f"record={app}/records.jsonl",
            f"hydra.sweep.dir=multirun/{runs}", *overrides]  # fmt: skip
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    if not env:
        environ.pop("SAMEXP_PARENT_RUN_ID", None)
    return args, environ


def sweep(app: Path, *overrides: str, env: dict[str, str] | None = None, returncode: int = 0):
    args, environ = sweep_command(app, *overrides, env=env)
    done = subprocess.run(args, cwd=app, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == returncode, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def storage_of(app: Path) -> str:
    return f"sqlite:///{app}/studies/optuna.db"


def study_of(app: Path) -> optuna.Study:
    return optuna.load_study(study_name="toy", storage=storage_of(app))


def records(app: Path) -> list[dict]:
    return [json.loads(line) for line in (app / "records.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_rerun_with_more_trials_resumes_the_study_up_to_exactly_n_trials(app):
    sweep(app)
    assert [t.state for t in study_of(app).trials] == [C, C, C]
    sweep(app, "hydra.sweeper.n_trials=5")
    study = study_of(app)
    assert [t.state for t in study.trials] == [C] * 5
    assert [r["optuna"]["trial_number"] for r in records(app)] == [0, 1, 2, 3, 4]
    assert len({t.params["x"] for t in study.trials}) == 5  # the rerun did not repeat the first
    results = yaml.safe_load((app / "multirun/1/optuna_results.yaml").read_text())
    assert results["best_trial"] == study.best_trial.number
    assert results["best_value"] == pytest.approx(study.best_value)
    assert len((app / "multirun/1/trials.csv").read_text().splitlines()) == 1 + 5
    sweep(app, "hydra.sweeper.n_trials=5")  # already there: nothing runs
    assert len(study_of(app).trials) == 5 and len(records(app)) == 5


@pytest.mark.slow
def test_jobs_get_their_trial_the_sampled_values_and_the_plain_overrides(app):
    sweep(app, "y=choice(7,8)", "shape=choice(circle,square)", "z=5", "hydra.sweeper.n_trials=4")
    study = study_of(app)
    jobs = records(app)
    assert [j["optuna"]["trial_number"] for j in jobs] == [0, 1, 2, 3]
    for job, trial in zip(jobs, study.trials, strict=True):
        assert job["optuna"] == {
            "storage": storage_of(app),  # relative in the config, resolved for jobs that chdir
            "study_name": "toy",
            "trial_number": trial.number,
            "pruner": {"_target_": "optuna.pruners.NopPruner"},
        }
        # the job ran exactly what the study recorded; the command line replaced params.y
        assert trial.params == {"x": job["x"], "y": job["y"], "shape": job["shape"]}
        assert job["y"] in (7, 8) and job["z"] == 5
        assert trial.state == C and trial.value == pytest.approx(job["x"] + job["y"])


@pytest.mark.slow
def test_a_job_the_pruner_stops_is_recorded_pruned_with_what_it_reported(app):
    # ThresholdPruner: a trial that reports more than 2.5 is pruned, whatever the sampler picks
    sweep(app, "hydra.sweeper.n_trials=6", "hydra/sweeper/pruner=threshold",
          "hydra.sweeper.pruner.upper=2.5")  # fmt: skip
    trials = study_of(app).trials
    assert {t.state for t in trials} == {C, P}
    for t in trials:
        assert t.intermediate_values == {0: pytest.approx(t.params["x"] + t.params["y"])}
        assert t.state == (P if t.intermediate_values[0] > 2.5 else C)


@pytest.mark.slow
def test_a_failing_or_nan_trial_is_recorded_failed_and_the_sweep_goes_on(app):
    done = sweep(app, "hydra.sweeper.n_trials=4", "fail_on=[1]", "nan_on=[2]")
    assert [t.state for t in study_of(app).trials] == [C, F, F, C]
    assert "trial 1 failed: RuntimeError: boom" in done.stderr + done.stdout
    assert (app / "multirun/0/optuna_results.yaml").exists()


@pytest.mark.parametrize("error, traceback", [(RuntimeError("boom"), True),
                                              (SamexpError("dataset root x does not exist"), False)])  # fmt: skip
def test_a_failed_trial_is_logged_with_a_traceback_unless_samexp_said_why(error, traceback, caplog):
    """A samexp error is the user's words (a bad setting fails every trial alike): one line per
    trial, no traceback; anything unexpected keeps its traceback."""
    from hydra.core.utils import JobReturn, JobStatus

    from hydra_plugins.samexp_optuna_sweeper.outcomes import tell

    study = optuna.create_study(direction="maximize")
    ret = JobReturn(status=JobStatus.FAILED, _return_value=error)
    with caplog.at_level(logging.WARNING):
        final, _ = tell(study, study.ask(), ret)
    assert final.state == F
    (record,) = [r for r in caplog.records if "trial 0 failed" in r.getMessage()]
    assert str(error) in record.getMessage()
    assert (record.exc_info is not None) is traceback


# seconds: a worker beats every second and is taken for dead 2 s after its last beat
HEARTBEAT = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2")
SPACE = {"x": FloatDistribution(-1, 1), "y": CategoricalDistribution([1, 2, 3])}


def other_worker(app: Path) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The toy study as another sweep process holds it: same storage, heartbeats on."""
    (app / "studies").mkdir(exist_ok=True)
    storage = open_storage(storage_of(app), 1, 2, lambda study, trial: None)
    study = optuna.create_study(study_name="toy", storage=storage, direction="maximize")
    return study, storage


def claim(study: optuna.Study, storage) -> optuna.Trial:
    with warnings.catch_warnings():  # the sweep beats for ask()ed trials itself, as here
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask(SPACE)
    storage.record_heartbeat(trial_id(storage, "toy", trial.number))
    trial.set_user_attr(WORKER, "elsewhere:1")
    return trial


@pytest.mark.slow
def test_a_second_sweep_leaves_the_live_trial_of_another_worker_running(app):
    study, storage = other_worker(app)
    theirs = claim(study, storage)
    with Heartbeat(storage, [trial_id(storage, "toy", theirs.number)], interval=1):
        args, env = sweep_command(app, "hydra.sweeper.n_trials=2", *HEARTBEAT)
        ours = subprocess.Popen(args, cwd=app, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        while not study.get_trials(states=(C,)) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # past the grace period: a live trial is still not failed
        assert study.trials[theirs.number].state == TrialState.RUNNING
        assert ours.poll() is None, "the sweep waits for the other worker's trial"
        study.tell(theirs, 0.5)  # the bug: "Cannot tell a FAIL trial"
    output = ours.communicate(timeout=60)[0]
    assert ours.returncode == 0, output[-3000:]
    assert [t.state for t in study_of(app).trials] == [C, C]
    assert [r["optuna"]["trial_number"] for r in records(app)] == [1]


@pytest.mark.slow
def test_a_dead_workers_trial_is_failed_after_the_grace_period_and_run_once_more(app):
    study, storage = other_worker(app)
    dead = claim(study, storage)  # one heartbeat, then its worker is gone
    sweep(app, "hydra.sweeper.n_trials=2", *HEARTBEAT)
    trials = study_of(app).trials
    assert [t.state for t in trials] == [F, C, C]
    # the dead trial is failed by whichever ask comes after its grace period: the sweep's first
    # (a slow start) or its second, so its retry is trial 1 or trial 2
    (retry,) = [t for t in trials[1:] if RETRY_OF in t.user_attrs]
    assert retry.params == dead.params and retry.user_attrs[RETRY_OF] == dead.number
    assert [r["optuna"]["trial_number"] for r in records(app)] == [1, 2]


@pytest.mark.slow
def test_an_interrupted_job_stops_the_sweep_with_its_exit_code_and_its_trial_runs_again(app):
    done = sweep(app, "hydra.sweeper.n_trials=3", "interrupt_on=[1]", returncode=143)
    trials = study_of(app).trials
    assert [t.state for t in trials] == [C, F, TrialState.WAITING]
    assert trials[1].user_attrs[INTERRUPTED] == "SIGTERM"
    assert trials[2].user_attrs == {RETRY_OF: 1}
    assert [r["optuna"]["trial_number"] for r in records(app)] == [0, 1], "nothing after it"
    assert (app / "multirun/0/optuna_results.yaml").exists()
    assert "sweep stopped by SIGTERM" in done.stdout + done.stderr
    sweep(app, "hydra.sweeper.n_trials=3")
    trials = study_of(app).trials
    assert [t.state for t in trials] == [C, F, C, C]
    assert trials[2].params == trials[1].params


@pytest.mark.slow
def test_parallel_batches_through_the_joblib_launcher_lose_no_trial(app):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep(app, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
          "hydra.sweeper.n_trials=4")  # fmt: skip
    trials = study_of(app).trials
    assert [t.state for t in trials] == [C] * 4
    assert all(t.intermediate_values for t in trials)  # every job wrote to the shared SQLite
    assert sorted(r["optuna"]["trial_number"] for r in records(app)) == [0, 1, 2, 3]


@pytest.mark.slow
def test_the_study_is_logged_to_the_sweeps_parent_run(app):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{app}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    parent = client.create_run(client.create_experiment("sweeps")).info.run_id
    sweep(app, "hydra.sweeper.n_trials=4",
          env={"SAMEXP_PARENT_RUN_ID": parent, "SAMEXP_TRACKING_URI": uri})  # fmt: skip
    run = client.get_run(parent)
    assert run.data.params == {"study.name": "toy", "study.storage": storage_of(app)}
    assert run.data.tags["study.n_trials"] == "4"
    # the trial table, the best trial and the objective against each parameter are the sweep
    # callback's one summary (tests/sweeps/test_sweep_parent.py): the study adds no second
    assert run.data.metrics == {}
    logged = {a.path for a in client.list_artifacts(parent)}
    assert logged == {"sweep"}
    assert {a.path for a in client.list_artifacts(parent, "sweep")} == {
        "sweep/optimization_history.png",
        "sweep/param_importances.png",
    }
    assert run.info.status == "RUNNING"  # the parent run belongs to the callback: left open


def test_plots_that_need_more_trials_are_skipped_not_fatal(tmp_path):
    from mlflow.tracking import MlflowClient

    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    log_study(study, Parent(client, run_id), storage="memory")  # importances need two trials
    logged = {a.path for a in client.list_artifacts(run_id, "sweep")}
    assert logged == {"sweep/optimization_history.png"}


def test_a_numeric_choice_is_plotted_as_numbers_without_matplotlibs_categorical_notice(
    tmp_path, caplog
):
    # a LoRA rank is a categorical of numbers, and the trial table holds it as the override's
    # text: matplotlib would take "2", "4", "8" for categories (Optuna's slice plot did so)
    import pandas as pd

    table = pd.DataFrame({"param.adapter.rank": ["2", "8", "4", "2"], "val/iou": [0.5, 0.7, 0.6, 0.4]})  # fmt: skip
    with caplog.at_level(logging.INFO):
        written = plot_objective(table, "param.adapter.rank", "val/iou", tmp_path)
    assert written == tmp_path / "val_iou_vs_adapter.rank.png" and written.is_file()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("matplotlib")] == []


@pytest.mark.parametrize(("group", "options"), [("sampler", SAMPLERS), ("pruner", PRUNERS)])
def test_every_sampler_and_pruner_option_instantiates(group, options):
    for name, node in options.items():
        if name == "threshold":  # needs a bound from the user
            node = dataclasses.replace(node, upper=1.0)
        built = instantiate(node)
        base = optuna.samplers.BaseSampler if group == "sampler" else optuna.pruners.BasePruner
        assert isinstance(built, base), name


@pytest.mark.parametrize("options", [SAMPLERS, PRUNERS])
def test_a_preset_holds_every_argument_of_its_optuna_class_at_optunas_default_or_samexps(options):
    # the class's signature is the schema: any argument is overridden without `+`, and a preset
    # writes only what samexp changes (TPE's seed, median's patience); the rest is Optuna's own
    changed = {"tpe": {"seed", "multivariate", "constant_liar"}, "random": {"seed"},
               "gp": {"seed"}, "median": {"n_startup_trials", "n_warmup_steps"},
               "percentile": {"percentile", "n_startup_trials", "n_warmup_steps"}}  # fmt: skip
    for name, node in options.items():
        arguments = inspect.signature(get_class(node._target_)).parameters.values()
        names = [a.name for a in arguments]
        assert [f.name for f in dataclasses.fields(node)] == ["_target_", *names], name
        different = {a.name for a in arguments if getattr(node, a.name) != a.default}
        assert different <= changed.get(name, set()), name
        assert not node._target_.split(".")[-2].startswith("_"), "a public name: " + node._target_
