"""Sweeps as scheduler jobs through hydra-submitit-launcher: `hydra/launcher=slurm` (samexp's
documented SLURM settings) asks for SIGTERM before the time limit, and a study's trials run as
submitit jobs, each in its own process, with `hydra/launcher=submitit_local`."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from samexp.config.errors import Interrupted
from tests.conftest import CONF_DIR, REPO, data_root


def slurm_launcher(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["hydra/launcher=slurm", "data_root=/data", f"hydra.sweep.dir={tmp_path}/sweep", *overrides],
            return_hydra_config=True,
        )  # fmt: skip
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda cfg: 0.0, config=cfg)
    return launcher


def test_slurm_jobs_are_asked_to_get_sigterm_before_their_time_limit(tmp_path, monkeypatch):
    # a fake sbatch keeps the job script and refuses it, so nothing waits for a cluster; submitit
    # only looks for srun
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", f'cp "$1" {tmp_path}/job.sh\necho "no cluster here" >&2'),
                       ("srun", "")):  # fmt: skip
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\nexit 1\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = slurm_launcher(tmp_path, "hydra.launcher.partition=gpu")
    with pytest.raises(Exception, match="no cluster here"):
        launcher.launch([["seed=0"]], initial_job_idx=0)

    script = (tmp_path / "job.sh").read_text()
    # samexp checkpoints on SIGTERM; submitit's default USR2 would go to its own requeue instead
    assert "#SBATCH --signal=TERM@120" in script
    assert "#SBATCH --partition=gpu" in script
    assert "#SBATCH --time=240" in script
    assert "#SBATCH --gpus-per-node=1" in script
    assert "#SBATCH --job-name=samexp" in script


def test_a_signal_stopped_jobs_error_survives_the_trip_back_from_its_job():
    # submitit pickles what a job raised; the sweeper reads exit code and signal from it to stop
    # the sweep (143) and queue the trial again, instead of crashing on a failed unpickle
    error = Interrupted("SIGTERM", 143, "epoch 9 step 25", "python -m samexp trainer.resume=abc")
    back = pickle.loads(pickle.dumps(error))
    assert (back.signal_name, back.exit_code, back.where, back.resume_hint) == (
        "SIGTERM", 143, "epoch 9 step 25", "python -m samexp trainer.resume=abc")  # fmt: skip
    assert str(back) == str(error)


@pytest.mark.slow
def test_a_studys_trials_run_as_two_submitit_jobs_each_in_its_own_process(tmp_path):
    import optuna
    from optuna.trial import TrialState

    args = [
        sys.executable, "-m", "samexp", "-m", "experiment=smoke", "trainer.epochs=1",
        "hparams_search=lora_rank_lr", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.study_name=jobs", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
        f"data_root={data_root()}", f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_root={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/multirun",
    ]  # fmt: skip
    env = {**os.environ, "SAMEXP_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SAMEXP_HOME": str(tmp_path)}  # fmt: skip
    env.pop("SAMEXP_PARENT_RUN_ID", None)
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # submitit ran each trial in a job of its own and returned its result
    results = sorted((tmp_path / "multirun" / ".submitit").glob("*/*_result.pkl"))
    assert len(results) == 2
    study = optuna.load_study(study_name="jobs", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("samexp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    # each job's value reached the study: the trials' values are what their runs measured
    by_trial = {c.data.tags["optuna.trial_number"]: c for c in children}
    for t in study.trials:
        assert by_trial[str(t.number)].data.metrics["best/val/iou"] == pytest.approx(t.value)
