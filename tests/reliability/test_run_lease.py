"""One writer per run, as real processes meet it: a resume of a run whose process lives, two
resumes of one run at once, a resume after its holder was SIGKILLed, and a torchrun job that
loses a rank to SIGKILL. Each story runs its processes once; the table reads what each printed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from samexp.tracking.tracker import Tracker
from tests.config.test_distributed import _command, _ranks
from tests.conftest import REPO
from tests.tracking.test_resume import _start, _wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("run_lease")]  # one worker per story

LONG = ("trainer.epochs=1000", "trainer.device=cpu")  # a first run that is alive until killed


@dataclass
class Story:
    said: dict[str, str] = field(default_factory=dict)  # by case: what its process printed
    names: dict[str, str] = field(default_factory=dict)  # run id, pids, host: for the messages
    tmp: Path = Path()


CASES = [
    pytest.param(
        "lease_story", "while-alive",
        r"ERROR.* MLflow run {run} is being written by another process \(pid {first} on host "
        r"{host}, last heartbeat \S+\): one process writes a run at a time; wait for it to end, "
        r"or stop it \(kill -TERM {first} on {host}: it checkpoints\) and resume again",
        id="resume-while-its-own-process-lives",
    ),
    pytest.param(
        "lease_story", "loser",
        r"ERROR.* MLflow run {run} .*another process \(pid {winner} on host {host}, last heartbeat",
        id="two-resumes-of-one-run-at-once",
    ),
    pytest.param(
        "lease_story", "winner", r"INFO.* resuming after epoch \d+ step \d+",
        id="resume-after-its-holder-was-sigkilled",
    ),
    pytest.param(
        "torchrun_story", "rank 0",
        r"ERROR.* interrupted at epoch \d+ step \d+ \(another rank was lost: killed, out of memory "
        r"or its node down\); resume with: torchrun --nproc_per_node=2 -m samexp .*"
        r"trainer.resume={run}",
        id="torchrun-one-rank-sigkilled",
    ),
]  # fmt: skip


@pytest.mark.parametrize("story_name, case, message", CASES)
def test_each_case_prints_its_message(story_name: str, case: str, message: str, request):
    story: Story = request.getfixturevalue(story_name)
    pattern = message.format(**{k: re.escape(v) for k, v in story.names.items()})
    assert re.search(pattern, story.said[case]), story.said[case]


@pytest.fixture(scope="module")
def lease_story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """A run trains; a resume of it is refused while its process lives; that process is
    SIGKILLed; two resumes of the run start at once."""
    story = Story(tmp=tmp_path_factory.mktemp("lease"))
    tmp = story.tmp
    first = _start(tmp, *LONG, folder="first")
    lines = "".join(_wait_for(first, "epoch 2:"))  # its epoch-1 checkpoint is in the run
    run_id = re.search(r"MLflow run \S+ \((\w+)\)", lines).group(1)
    os.kill(
        first.pid, signal.SIGSTOP
    )  # alive, holding its lease, but leaving the cores to the rest
    second = _start(tmp, *LONG, f"trainer.resume={run_id}", folder="second")
    story.said["while-alive"], _ = second.communicate(timeout=180)
    assert second.returncode == 2, story.said["while-alive"]
    first.kill()
    first.communicate(timeout=30)

    logged = _client(tmp).get_metric_history(run_id, "train/loss")
    epochs = f"trainer.epochs={max(m.step for m in logged) + 1}"  # one or two epochs to go
    racing = [_start(tmp, *LONG, epochs, f"trainer.resume={run_id}", folder=f"race{i}")
              for i in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=240)[0] for p in racing]
    codes = sorted(p.returncode for p in racing)
    assert codes == [0, 2], outputs
    won = [p.returncode for p in racing].index(0)
    story.said["winner"], story.said["loser"] = outputs[won], outputs[1 - won]
    story.names = {"run": run_id, "first": str(first.pid), "winner": str(racing[won].pid),
                   "host": socket.gethostname(), "won": f"race{won}", "lost": f"race{1 - won}"}  # fmt: skip
    return story


def test_of_two_resumes_at_once_one_trains_and_each_step_and_the_weights_are_written_once(
    lease_story: Story,
):
    tmp, names = lease_story.tmp, lease_story.names
    run = _client(tmp).get_run(names["run"])
    assert run.info.status == "FINISHED" and run.data.tags["samexp.resumptions"] == "1"
    steps = [m.step for m in _client(tmp).get_metric_history(names["run"], "train/loss")]
    assert len(steps) == len(set(steps)), steps  # no epoch logged twice
    assert (tmp / names["won"] / "adapter.safetensors").is_file()
    assert not (tmp / names["lost"] / "adapter.safetensors").exists()
    assert "adapter weights" not in lease_story.said["loser"]
    for case in ("while-alive", "loser"):  # one line each, no traceback
        assert "Traceback" not in lease_story.said[case]
        assert len([x for x in lease_story.said[case].splitlines() if "ERROR" in x]) == 1


@pytest.fixture(scope="module")
def torchrun_story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """A 2-rank torchrun job whose rank 1 is SIGKILLed after its first checkpoint."""
    story = Story(tmp=tmp_path_factory.mktemp("torchrun"))
    job = subprocess.Popen(_command(story.tmp, "k", 2, "trainer.epochs=400", "trainer.batch_size=1"),
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    _wait_for(job, "epoch 2:")  # the checkpoint after epoch 1 is in the run
    ranks = _ranks(job.pid)
    assert sorted(ranks) == [0, 1], ranks
    killed_at = time.monotonic()
    os.kill(ranks[1], signal.SIGKILL)
    story.said["rank 0"], _ = job.communicate(timeout=60)
    story.names["seconds"] = f"{time.monotonic() - killed_at:.1f}"
    story.names["returncode"] = str(job.returncode)
    resume = re.search(r"trainer.resume=(\w+)", story.said["rank 0"])
    assert resume, story.said["rank 0"][-4000:]
    story.names["run"] = resume.group(1)
    return story


def test_a_torchrun_job_that_loses_a_rank_ends_within_seconds_and_resume_last_finds_it(
    torchrun_story: Story,
):
    said, names = torchrun_story.said["rank 0"], torchrun_story.names
    assert float(names["seconds"]) < 15 and names["returncode"] != "0"
    assert "Signal 9 (SIGKILL) received by PID" in said  # torchrun's summary names the root cause
    assert "Connection reset by peer" not in said and "Connection closed by peer" not in said
    run = MlflowClient(f"sqlite:///{torchrun_story.tmp}/k.db").get_run(names["run"])
    assert run.info.status == "KILLED" and run.data.tags["samexp.state"] == "INTERRUPTED"
    tracker = Tracker(tracking_uri=f"sqlite:///{torchrun_story.tmp}/k.db",
                      artifact_root=str(torchrun_story.tmp / "k-art"))  # fmt: skip
    assert tracker.find_resumable() == names["run"]  # what trainer.resume=last runs


def _client(tmp: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp}/mlflow.db")
