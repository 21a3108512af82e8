"""Resuming as a hostile or unlucky user would: a sweep trial resumed with the command its
interruption printed, a `last.pt` with a wrong-typed field or NaN weights, fewer epochs than the
run already did, a dropped SSH session (SIGHUP), a monitor naming a category the data lacks.

Each row provokes one fault in process (the tiny SAM, a few steps of rings) and returns the line
samexp now says; the table holds the words that line must contain. The terminal hang-up itself
is a real process under a pseudo-terminal, below the table.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pty
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution

from hydra_plugins.samexp_optuna_sweeper.outcomes import tell
from samexp.config.errors import Interrupted, SamexpError
from samexp.runner import run
from samexp.training.monitor import check_monitor
from samexp.training.state import load_state, save_state
from tests.conftest import REPO, compose_config, data_root
from tests.data.test_coco import _shapes_coco
from tests.tracking.test_resume import KEPT, _signal_after_steps, _tiny_state

# 6 rings images to train in batches of 2: 3 optimizer steps an epoch
SETTING = ["model=tiny", "adapter=decoder", "trainer.batch_size=2", "trainer.epochs=2",
           "cache.enabled=false", "trainer.device=cpu"]  # fmt: skip


@dataclasses.dataclass
class Shared:
    """What the rows of this module share to stay cheap: one MLflow store (a fresh one costs
    seconds of migrations) and one run interrupted by SIGHUP, made by the first row that needs it."""

    folder: Path
    hung_up: Interrupted | None = None


@dataclasses.dataclass
class Scene:
    tmp: Path
    shared: Shared
    monkeypatch: pytest.MonkeyPatch
    caplog: pytest.LogCaptureFixture

    def config(self, out: str, *overrides: str):
        return compose_config([
            f"data_root={data_root()}", f"tracking.tracking_uri={self.store}",
            f"tracking.artifact_root={self.shared.folder}/artifacts", f"output_dir={self.tmp / out}",
            *SETTING, *overrides,
        ])  # fmt: skip

    @property
    def store(self) -> str:
        return f"sqlite:///{self.shared.folder}/mlflow.db"

    def interrupted(
        self, *overrides: str, steps: int = 4, sig: signal.Signals = signal.SIGTERM
    ) -> Interrupted:
        """A run stopped by `sig` during optimizer step `steps` (epoch 2 step 4 by default)."""
        with self.monkeypatch.context() as patch:
            _signal_after_steps(patch, steps, sig)
            with pytest.raises(Interrupted) as stopped:
                run(self.config("first", *overrides))
        return stopped.value

    def hung_up(self) -> Interrupted:
        """The module's run stopped by SIGHUP at epoch 2 step 4 (a dropped SSH session)."""
        if self.shared.hung_up is None:
            self.shared.hung_up = self.interrupted(sig=signal.SIGHUP)
        return self.shared.hung_up

    def status(self, run_id: str) -> tuple[str, dict[str, str]]:
        found = MlflowClient(self.store).get_run(run_id)
        return found.info.status, found.data.tags


def run_id_of(stopped: Interrupted) -> str:
    return stopped.resume_hint.rsplit("trainer.resume=", 1)[1]


def sweep_trial_resumed_after_its_sweep(s: Scene) -> str:
    """Severe 5: the printed command of an interrupted trial trains, and its result reaches the
    study (as the trial's queued retry) instead of failing on the finished trial."""
    storage = f"sqlite:///{s.tmp}/optuna.db"
    study = optuna.create_study(study_name="rings", storage=storage, direction="maximize")
    trial = study.ask({"optim.lr": FloatDistribution(1e-5, 1e-2, log=True)})
    job = (f"optim.lr={trial.params['optim.lr']}", f"optuna.storage='{storage}'",
           "optuna.study_name=rings", f"optuna.trial_number={trial.number}",
           "objective=best/val/iou")  # fmt: skip
    stopped = s.interrupted(*job)
    # what the sweeper does with the job's Interrupted: trial FAIL, its params queued again
    ret = JobReturn(status=JobStatus.FAILED, _return_value=stopped)
    tell(study, trial, ret)

    resumed = run(s.config("second", *job, f"trainer.resume={run_id_of(stopped)}"))
    status, tags = s.status(resumed.run_id)
    assert status == "FINISHED" and tags["optuna.trial_number"] == "1"
    first, retry = optuna.load_study(study_name="rings", storage=storage).trials
    assert first.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.params == first.params and retry.user_attrs["resumed_from"] == 0
    assert retry.value == pytest.approx(resumed.metrics["best/val/iou"])
    assert sorted(retry.intermediate_values) == [1, 2]  # both parts' reports
    return next(r.getMessage() for r in s.caplog.records if "completed with" in r.getMessage())


def checkpoint(s: Scene, change: Callable[[dict], None]) -> str:
    """A checkpoint written by samexp, then altered in its saved form, loaded back."""
    path = save_state(_tiny_state(), s.tmp / "last.pt")
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    with pytest.raises(SamexpError) as refused:
        load_state(path, {"w": torch.zeros(2, 3)}, KEPT)
    return str(refused.value)


def wrong_typed_epoch(s: Scene) -> str:
    return checkpoint(s, lambda p: p.update(epoch="2"))


def wrong_typed_rng(s: Scene) -> str:
    return checkpoint(s, lambda p: p["rng"].update(python=[3, "state", None]))


def guard_key_that_is_no_counter(s: Scene) -> str:
    # a limit read from the file would lift the config's
    return checkpoint(s, lambda p: p["parts"]["guard"].update(limit=10**9))


def nan_weights(s: Scene) -> str:
    return checkpoint(s, lambda p: p["params"]["w"].fill_(math.nan))


def inf_optimizer_moment(s: Scene) -> str:
    return checkpoint(s, lambda p: p["optimizer"]["state"][0]["exp_avg"].fill_(math.inf))


def sighup_mid_step(s: Scene) -> str:
    stopped = s.hung_up()
    assert stopped.exit_code == 129
    status, tags = s.status(run_id_of(stopped))
    assert status == "KILLED" and tags["samexp.state"] == "INTERRUPTED"
    assert "checkpoints/last.pt" in {
        a.path for a in MlflowClient(s.store).list_artifacts(run_id_of(stopped), "checkpoints")
    }
    return str(stopped)


def fewer_epochs_than_done(s: Scene) -> str:
    stopped = s.hung_up()
    with pytest.raises(SamexpError) as refused:
        run(s.config("second", "trainer.epochs=1", f"trainer.resume={run_id_of(stopped)}"))
    assert s.status(run_id_of(stopped))[0] == "KILLED"  # still there to resume properly
    return str(refused.value)


def monitor_category_the_data_lacks(s: Scene) -> str:
    root = _shapes_coco(s.tmp / "coco")
    cfg = s.config("out", "dataset=coco", f"dataset.root={root}", "dataset.val_size=0.34",
                   "trainer.monitor=iou/zebra")  # fmt: skip
    with pytest.raises(SamexpError) as refused:
        run(cfg)
    check_monitor("iou/square", ["square", "blob"], False, "val")  # a real category passes
    return str(refused.value)


def monitor_category_without_categories(s: Scene) -> str:
    with pytest.raises(SamexpError) as refused:
        run(s.config("out", "trainer.monitor=dice/ring"))
    return str(refused.value)


# (the fault, what samexp now says about it)
CASES = [
    pytest.param(
        sweep_trial_resumed_after_its_sweep,
        r"study 'rings': trial 1 \(params of interrupted trial 0\) completed with 0\.\d+",
        id="sweep-trial-resumed-with-the-printed-command",
        marks=pytest.mark.slow,  # two runs and a study: ~10 s on a quiet 2-core CPU
    ),
    pytest.param(
        wrong_typed_epoch,
        r"last\.pt: checkpoint field epoch is str, expected int; the file is damaged",
        id="last-pt-epoch-as-text",
    ),
    pytest.param(
        wrong_typed_rng,
        r"last\.pt: checkpoint field rng\.python\[1\] is str, expected list\[int\]",
        id="last-pt-rng-state-as-text",
    ),
    pytest.param(
        guard_key_that_is_no_counter,
        r"last\.pt: checkpoint field parts\.guard lacks keys \[\] or has unknown \['limit'\]",
        id="last-pt-guard-sets-its-limit",
    ),
    pytest.param(
        nan_weights,
        r"last\.pt: checkpoint tensor params\.w holds NaN or inf values; .* damaged",
        id="last-pt-nan-weights",
    ),
    pytest.param(
        inf_optimizer_moment,
        r"last\.pt: checkpoint tensor optimizer\.state\[0\]\.exp_avg holds NaN or inf",
        id="last-pt-inf-optimizer-moment",
    ),
    pytest.param(
        fewer_epochs_than_done,
        r"trainer\.epochs=1 is below the 2 epochs that run already reached \(it "
        r"stopped at epoch 2 step 4\); resume with trainer\.epochs=2 or more",
        id="resume-with-fewer-epochs-than-done",
    ),
    pytest.param(
        sighup_mid_step,
        r"interrupted at epoch 2 step 4 \(SIGHUP\); resume with: python -m samexp .*"
        r"trainer\.resume=",
        id="sighup-stops-after-the-step",
    ),
    pytest.param(
        monitor_category_the_data_lacks,
        r"trainer\.monitor=iou/zebra: the validation split of coco has no such "
        r"category; valid monitors: iou, dice, and iou/<category> or dice/<category> "
        r"for blob, square",
        id="monitor-unknown-category",
    ),
    pytest.param(
        monitor_category_without_categories,
        r"trainer\.monitor=dice/ring: the validation split of rings has no categories "
        r"to monitor apart .*; valid monitors: iou, dice",
        id="monitor-category-of-a-dataset-without-categories",
    ),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return Shared(tmp_path_factory.mktemp("shared"))


@pytest.mark.parametrize("fault, message", CASES)
def test_a_resume_fault_ends_in_one_line_or_a_finished_run(
    tmp_path: Path, shared: Shared, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, fault: Callable[[Scene], str], message: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="samexp")
    said = fault(Scene(tmp_path, shared, monkeypatch, caplog))
    assert "\n" not in said and re.search(message, said), said


@pytest.mark.slow
def test_a_dropped_ssh_session_stops_after_the_step_keeps_the_run_and_says_how_to_resume(
    tmp_path: Path,
) -> None:
    """A real terminal hung up under a training run (as sshd does when the connection drops):
    the run stops after its step with a checkpoint, ends KILLED (resumable, not RUNNING), exits
    129, and with the terminal gone the resume command is in its log file and MLflow tags."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = [sys.executable, "-m", "samexp", f"tracking.tracking_uri={store}",
            f"tracking.artifact_root={tmp_path}/art", f"hydra.run.dir={tmp_path}/run",
            f"data_root={data_root()}", *SETTING, "trainer.epochs=40"]  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    pid, terminal = pty.fork()  # the child leads a session whose controlling terminal it is
    if pid == 0:
        os.chdir(REPO)
        os.execve(sys.executable, args, {**environ, "PYTHONUNBUFFERED": "1"})
    seen, deadline = b"", time.monotonic() + 120
    while b"epoch 1:" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(terminal, 4096)
        except OSError:  # the child ended: the terminal reads EIO
            break
    os.close(terminal)  # hang up: the kernel sends SIGHUP to the session
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129, seen.decode(errors="replace")[-3000:]
    client = MlflowClient(store)
    (found,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    assert found.info.status == "KILLED" and found.data.tags["samexp.state"] == "INTERRUPTED"
    assert "SIGHUP" in found.data.tags["samexp.interrupted"]
    logged = (tmp_path / "run" / "__main__.log").read_text()
    assert "(SIGHUP); resume with: python -m samexp " in logged and "Traceback" not in logged
