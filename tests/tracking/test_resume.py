"""Interrupted runs keep their work: a signal stops training after the step in progress with a
checkpoint, the MLflow run ends KILLED saying how to resume, and resuming ends exactly where a
straight run would have."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from samexp.config.errors import Interrupted, SamexpError, UntrustedFileError
from samexp.runner import run
from samexp.training import loop as train
from samexp.training.divergence import Divergence
from samexp.training.monitor import Monitor, Validation
from samexp.training.state import EpochProgress, TrainState, load_state, save_state
from tests.conftest import REPO, compose_config, data_root

# LoRA with dropout (the global torch RNG), jittered points (the prompt generator), augmentation
# (the data pipeline's RNG) and a cosine schedule: every state a resume has to bring back
SETTING = ["model=tiny", "adapter=lora", "adapter.dropout=0.1", "prompt=box_points",
           "augment=default", "scheduler=cosine", "trainer.epochs=4", "trainer.batch_size=2",
           "cache.enabled=false"]  # fmt: skip


def _config(tmp_path: Path, out: str, *overrides: str):
    return compose_config([
        f"data_root={data_root()}",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
        f"tracking.artifact_root={tmp_path}/mlruns/artifacts",
        f"output_dir={tmp_path / out}", *SETTING, *overrides,
    ])  # fmt: skip


def _signal_after_steps(monkeypatch, steps: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Deliver `sig` to this process during optimizer step number `steps`, as a scheduler would."""
    real, calls = train._optimizer_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == steps:
            signal.raise_signal(sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "_optimizer_step", step_then_signal)


def _state(run_id: str, tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    found = client.get_run(run_id)
    return found.info.status, found.data.tags


@pytest.mark.slow
@pytest.mark.parametrize("steps", [5, 6], ids=["mid-epoch", "epoch-end"])
def test_an_interrupted_then_resumed_run_ends_bit_identical_to_a_straight_one(
    tmp_path, monkeypatch, steps
):
    straight = run(_config(tmp_path, "straight"))

    _signal_after_steps(monkeypatch, steps)  # 3 steps per epoch: in epoch 2 or at its end
    with pytest.raises(Interrupted) as stopped:
        run(_config(tmp_path, "first"))
    monkeypatch.undo()
    assert stopped.value.exit_code == 143 and stopped.value.signal_name == "SIGTERM"
    assert stopped.value.where == f"epoch 2 step {steps}"
    run_id = stopped.value.resume_hint.rsplit("trainer.resume=", 1)[1]
    status, tags = _state(run_id, tmp_path)
    assert status == "KILLED" and "trainer.resume=" in tags["samexp.interrupted"]

    resumed = run(_config(tmp_path, "second", f"trainer.resume={run_id}"))
    assert resumed.run_id == run_id  # the same MLflow run goes on
    assert resumed.metrics == straight.metrics
    a = load_file(tmp_path / "straight" / "adapter.safetensors")
    b = load_file(tmp_path / "second" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    status, tags = _state(run_id, tmp_path)
    assert status == "FINISHED" and tags["samexp.resumptions"] == "1"
    history = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db").get_metric_history(
        run_id, "train/loss"
    )
    assert sorted(m.step for m in history) == [1, 2, 3, 4]  # metrics go on at the next epoch


@pytest.mark.slow
def test_a_resume_under_another_config_is_refused_listing_the_differences(tmp_path, monkeypatch):
    _signal_after_steps(monkeypatch, 2)
    with pytest.raises(Interrupted) as stopped:
        run(_config(tmp_path, "first"))
    monkeypatch.undo()
    run_id = stopped.value.resume_hint.rsplit("trainer.resume=", 1)[1]
    changed = _config(tmp_path, "second", f"trainer.resume={run_id}", "adapter.rank=4",
                      "optim.lr=0.001", "trainer.epochs=6")  # fmt: skip
    with pytest.raises(SamexpError, match=r"differs .* in adapter.rank \(8 -> 4\), optim.lr") as e:
        run(changed)
    assert "trainer.epochs (" not in str(e.value)  # the one key a resume may change
    longer = run(_config(tmp_path, "third", "trainer.resume=last", "trainer.epochs=5"))
    assert longer.run_id == run_id and longer.metrics["train/epochs_run"] == 5


def test_resuming_needs_a_run_that_exists_and_did_not_finish(tmp_path):
    with pytest.raises(SamexpError, match="no-such-run"):
        run(_config(tmp_path, "x", "trainer.resume=no-such-run"))
    with pytest.raises(SamexpError, match="no interrupted run"):
        run(_config(tmp_path, "x", "trainer.resume=last"))


# --- the checkpoint file -----------------------------------------------------------------------
def _tiny_state() -> TrainState:
    weight = torch.randn(2, 3)
    return TrainState(
        epoch=2, epoch_complete=False, step=5, params={"w": weight},
        optimizer={"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(2, 3)}},
                   "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]},
        scheduler={"last_epoch": 5, "base_lrs": [1e-4]}, scaler={},
        rng={"torch": torch.get_rng_state(), "numpy": ["MT19937", torch.arange(624), 3, 0, 0.0],
             "python": [3, list(range(625)), None], "prompt": torch.Generator().get_state()},
        loader_rng=torch.Generator().get_state(),
        progress=EpochProgress(batches_done=2, seen=2, sums={"loss": 1.5}, norms=[0.1, math.nan]),
        parts={"monitor": {"best": 0.5, "best_epoch": 1, "stale": 0, "best_params": {"w": weight * 2}},
               "guard": {"skipped": 1, "in_a_row": 0}},
    )  # fmt: skip


# the parts whose state the checkpoint above holds (a run with validation)
KEPT = {"monitor": Validation(lambda epoch: {}, Monitor("val/iou")), "guard": Divergence()}


def test_a_checkpoint_round_trips_every_state(tmp_path):
    state = _tiny_state()
    loaded = load_state(save_state(state, tmp_path / "last.pt"), {"w": torch.zeros(2, 3)}, KEPT)
    assert loaded.where == "epoch 2 step 5" and loaded.progress.sums == {"loss": 1.5}
    assert torch.equal(loaded.params["w"], state.params["w"])
    assert torch.equal(loaded.parts["monitor"]["best_params"]["w"], state.parts["monitor"]["best_params"]["w"])  # fmt: skip
    assert loaded.parts["guard"] == {"skipped": 1, "in_a_row": 0}
    assert loaded.optimizer["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(loaded.rng["torch"], state.rng["torch"])


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tmp_path):
    path = save_state(_tiny_state(), tmp_path / "last.pt")
    with pytest.raises(UntrustedFileError, match=r"params.w: \[2, 3\] torch.float32 does not fit"):
        load_state(path, {"w": torch.zeros(3, 3)}, KEPT)
    with pytest.raises(SamexpError, match="does not fit the model built now"):
        load_state(path, {"v": torch.zeros(2, 3)}, KEPT)
    with pytest.raises(
        SamexpError, match=r"training parts were \['guard', 'monitor'\], this one has \['guard'\]"
    ):
        load_state(path, {"w": torch.zeros(2, 3)}, {"guard": Divergence()})


class _Payload:
    def __reduce__(self):
        return (Path("/tmp/samexp-pwned").touch, ())


def test_a_checkpoint_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": 1, "epoch": _Payload()}, path)
    Path("/tmp/samexp-pwned").unlink(missing_ok=True)
    with pytest.raises(UntrustedFileError, match="not a readable samexp checkpoint"):
        load_state(path, {})
    assert not Path("/tmp/samexp-pwned").exists()
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:40])
    with pytest.raises(UntrustedFileError, match="not a readable samexp checkpoint"):
        load_state(tmp_path / "cut.pt", {})


# --- as a user meets it: a real process, a real signal ------------------------------------------
START = ("model=tiny", "adapter=decoder", "trainer.epochs=40", "cache.enabled=false")


def _start(tmp_path: Path, *overrides: str, folder: str = "hydra") -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "samexp", f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
         f"tracking.artifact_root={tmp_path}/art", f"hydra.run.dir={tmp_path}/{folder}",
         f"data_root={data_root()}", *START, *overrides],
        cwd=REPO, env={**environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for(process: subprocess.Popen[str], text: str, seconds: float = 120) -> list[str]:
    lines, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if text in line:
            return lines
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"never saw {text!r}:\n{''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_the_process_with_one_line_saying_how_to_resume(tmp_path, sig, code):
    process = _start(tmp_path)
    _wait_for(process, "epoch 2:")  # two epochs trained and logged
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == code, rest
    assert "Traceback" not in rest
    errors = [line for line in rest.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "interrupted at epoch " in errors[0], rest
    command = errors[0].split("resume with: ", 1)[1]
    epoch = int(errors[0].split("interrupted at epoch ", 1)[1].split()[0])
    assert epoch in (2, 3)  # stopped after the step in progress, not at the end of the run
    assert command.startswith("python -m samexp ") and "trainer.resume=" in command
    run_id = command.rsplit("trainer.resume=", 1)[1]
    found = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(run_id)
    assert found.info.status == "KILLED"
    assert found.data.tags["samexp.state"] == "INTERRUPTED"
    assert "checkpoints/last.pt" in [
        a.path for a in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(run_id, "checkpoints")
    ]  # fmt: skip


def test_a_second_ctrl_c_during_the_step_stops_at_once_and_the_run_ends_killed(
    tmp_path, monkeypatch
):
    real, calls = train._optimizer_step, []

    def pressed_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # raises KeyboardInterrupt here, mid-step
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "_optimizer_step", pressed_twice)
    with pytest.raises(KeyboardInterrupt):
        run(_config(tmp_path, "first", "trainer.epochs=1"))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    (found,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    assert found.info.status == "KILLED" and found.data.tags["samexp.state"] == "INTERRUPTED"
    assert len(calls) == 2  # nothing ran after the second press


@pytest.mark.slow
def test_after_sigkill_resume_last_finds_the_run_and_ends_as_a_straight_run_would(tmp_path):
    """SIGKILL cannot be caught: the run is found RUNNING with its process gone, ended KILLED,
    and continued from its last epoch checkpoint; at most the epoch in progress is trained again."""
    killed = _start(tmp_path, "trainer.epochs=5", folder="killed")
    _wait_for(killed, "epoch 2:")
    killed.kill()
    killed.communicate(timeout=30)
    resumed = _start(tmp_path, "trainer.epochs=5", "trainer.resume=last", folder="resumed")
    out, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out
    assert "resuming after epoch " in out
    # the run to match needs no process of its own: the same settings, trained in this one
    straight = tmp_path / "straight"
    run(compose_config([f"data_root={data_root()}", *START, "trainer.epochs=5",
                        f"tracking.tracking_uri=sqlite:///{straight}/mlflow.db",
                        f"tracking.artifact_root={straight}/art", f"output_dir={straight}"]))  # fmt: skip
    a = load_file(straight / "adapter.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (found,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    assert found.info.status == "FINISHED" and found.data.tags["samexp.resumptions"] == "1"
