"""torchrun: N processes train one model (DDP over gloo on CPU) and log one run; evaluation is
shared out and gathered, so every figure matches one process on the same global batch."""

from __future__ import annotations

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

from samexp.config.distributed import ShardBatches, World
from tests.conftest import REPO, data_root

# deterministic prompts, no validation split: what differs between 1 and 2 processes is only
# the order of float additions
COMMON = ["model=tiny", "adapter=decoder", "prompt.jitter=0", "trainer.epochs=2",
          "trainer.val_fraction=0"]  # fmt: skip
IMAGES = 10  # the rings: 8 to train on, 2 to test
TOLERANCE = 1e-5  # max abs difference of any trained weight (they are of order 1)


def _command(tmp: Path, name: str, processes: int, *overrides: str,
             entry: tuple[str, ...] = ("-m", "samexp")) -> list[str]:  # fmt: skip
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable])  # fmt: skip
    return [*launcher, *entry, f"data_root={data_root()}",
            f"tracking.tracking_uri=sqlite:///{tmp}/{name}.db", f"tracking.artifact_root={tmp}/{name}-art",
            f"hydra.run.dir={tmp}/{name}", f"cache.dir={tmp}/{name}-cache", *COMMON,
            *overrides]  # fmt: skip


def _run(tmp: Path, name: str, processes: int, *overrides: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_command(tmp, name, processes, *overrides), cwd=REPO, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _only_run(tmp: Path, name: str):
    client = MlflowClient(f"sqlite:///{tmp}/{name}.db")
    (found,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    return found


@pytest.mark.slow
def test_two_processes_train_the_weights_and_log_the_run_one_process_would(tmp_path):
    _run(tmp_path, "one", 1, "trainer.batch_size=2")
    _run(tmp_path, "two", 2, "trainer.batch_size=1")  # batch_size is per process: global 2
    one = load_file(tmp_path / "one" / "adapter.safetensors")
    two = load_file(tmp_path / "two" / "adapter.safetensors")
    assert one.keys() == two.keys()
    assert max((one[k] - two[k]).abs().max().item() for k in one) <= TOLERANCE
    a, b = _only_run(tmp_path, "one"), _only_run(tmp_path, "two")  # exactly one run each
    assert b.info.status == "FINISHED" and set(a.data.metrics) == set(b.data.metrics)
    for key in ("baseline/test/iou", "final/test/iou", "final/test/dice", "train/steps"):
        assert b.data.metrics[key] == pytest.approx(a.data.metrics[key], abs=1e-6), key
    # each rank encoded its share into the shared embedding cache, and no image twice
    assert a.data.metrics["cache/misses"] == b.data.metrics["cache/misses"] == IMAGES
    assert len(list((tmp_path / "two-cache").glob("*/*.pt"))) == IMAGES


def _ranks(pid: int) -> dict[int, int]:
    """The processes torchrun `pid` started, by their RANK (read from their environment: pids
    wrap around, 32768 here, so their order says nothing)."""
    found = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PPid:\t{pid}" in lines:
            rank = [v.removeprefix(b"RANK=") for v in environ if v.startswith(b"RANK=")]
            found[int(rank[0]) if rank else -1] = int(status.parent.name)
    return found


# SIGKILL of one rank (the job ends within seconds, its run resumable): a row of
# tests/reliability/test_run_lease.py


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["samexp", "bug"])
def test_a_failure_on_one_rank_alone_ends_the_job_with_its_message_printed_once(tmp_path, failure):
    """Rank 1 fails as training starts while rank 0 waits for it in a collective: rank 1's
    message (a one-line error, or a bug's traceback) is printed, rank 0's broken connection is
    not, and the job ends at once rather than at the collective timeout."""
    started = time.monotonic()
    done = subprocess.run(_command(tmp_path, "f", 2, "trainer.batch_size=1",
                                   entry=(str(REPO / "tests" / "fail_one_rank.py"),)),
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FAIL_RANK": "1", "FAIL_WITH": failure})  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "ChildFailedError" in said  # torchrun's own summary (and its traceback) follows
    if failure == "samexp":  # one line, naming the rank; no traceback but torchrun's
        assert said.count("this rank's shard holds a broken image") == 1, said
        assert "rank 1: this rank's shard holds a broken image" in said
        assert said.count("Traceback (most recent call last)") == 1, said
    else:  # rank 1's traceback, ending in its message; none from rank 0
        assert said.count("RuntimeError: this rank's shard holds a broken image") == 1, said
        assert said.count("Traceback (most recent call last)") == 2, said
    assert "Connection closed by peer" not in said  # rank 0's symptom stays out of the way
    assert _only_run(tmp_path, "f").info.status == "FAILED"  # rank 0's run: not left RUNNING


def test_shards_cover_every_batch_once_and_in_order():
    shards = [ShardBatches(7, 2, World(rank, 2)) for rank in range(2)]
    assert [s.numbers for s in shards] == [[0, 2], [1, 3]]
    assert sorted(i for s in shards for b in s for i in b) == list(range(7))
    one = ShardBatches(7, 2, World())
    assert list(one) == [[0, 1], [2, 3], [4, 5], [6]] and len(one) == 4
    assert torch.equal(torch.tensor(shards[1].batches[1]), torch.tensor([6]))


@pytest.mark.slow
def test_sigterm_under_torchrun_checkpoints_once_and_a_torchrun_resume_ends_as_a_straight_run(
    tmp_path,
):
    """The stop request is all-reduced, so both ranks stop after the same step; rank 0 alone
    writes the checkpoint and says how to resume, launched the same way."""
    setting = ("trainer.epochs=4", "trainer.batch_size=1")
    first = subprocess.Popen(_command(tmp_path, "s", 2, *setting, "hydra.run.dir=" + str(tmp_path / "first")),
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    for line in first.stdout:
        if "epoch 2:" in line:
            break
    first.send_signal(signal.SIGTERM)  # torchrun's agent forwards it to every rank
    rest, _ = first.communicate(timeout=120)
    said = [line for line in rest.splitlines() if "interrupted at epoch" in line]
    assert len(said) == 1, rest  # one line, from rank 0
    assert "resume with: torchrun --nproc_per_node=2 -m samexp " in said[0]
    run = _only_run(tmp_path, "s")
    assert run.info.status == "KILLED"
    _run(
        tmp_path,
        "s",
        2,
        *setting,
        "trainer.resume=last",
        "hydra.run.dir=" + str(tmp_path / "again"),
    )
    _run(tmp_path, "straight", 2, *setting)
    resumed = load_file(tmp_path / "again" / "adapter.safetensors")
    straight = load_file(tmp_path / "straight" / "adapter.safetensors")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert _only_run(tmp_path, "s").info.status == "FINISHED"


def _prune_on_rank(rank: int, store: str, results: str) -> None:
    import optuna
    import torch.distributed as dist

    from samexp.sweeps.pruning import shared_verdict

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)

    def rank0_trial(value: float, epoch: int) -> None:  # what the Optuna reporter does
        if epoch == 2:
            raise optuna.TrialPruned("median pruner")

    report = shared_verdict(rank0_trial if rank == 0 else None, World(rank, 2))
    outcome = []
    for epoch in (1, 2):
        try:
            report(0.5, epoch)
            outcome.append("went on")
        except optuna.TrialPruned:
            outcome.append("pruned")
    Path(results, str(rank)).write_text(",".join(outcome))
    dist.destroy_process_group()


@pytest.mark.slow
def test_rank_0s_pruning_verdict_stops_every_rank_at_the_same_epoch(tmp_path):
    torch.multiprocessing.spawn(_prune_on_rank, args=(str(tmp_path / "store"), str(tmp_path)),
                                nprocs=2, join=True)  # fmt: skip
    assert [(tmp_path / str(r)).read_text() for r in (0, 1)] == ["went on,pruned"] * 2


def test_a_process_leaves_its_process_group_before_it_exits(tmp_path: Path):
    import torch.distributed as dist

    from samexp.config.distributed import stop

    stop()  # none yet: nothing to do
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    assert dist.is_initialized()
    stop()
    assert not dist.is_initialized()
