"""Runs started at the same moment, as real processes: each must succeed and keep its own things.

Every row starts its processes, waits until all have imported what they need, then releases them
together, so they race where real jobs race (a sweep's first jobs, a queue emptying at once).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO

# each snippet gets argv: <tmp folder> <its index>; it waits for <tmp>/go after creating ready-<i>
BARRIER = """
import sys, time
from pathlib import Path
tmp, index = Path(sys.argv[1]), int(sys.argv[2])
(tmp / f"ready-{index}").touch()
while not (tmp / "go").exists():
    time.sleep(0.005)
"""

FIRST_RUNS = (
    """
from samexp.tracking.tracker import Tracker
"""
    + BARRIER
    + """
tracker = Tracker(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db", artifact_root=f"{tmp}/art")
with tracker.start_run(f"run-{index}", params={"index": index}, tags={}):
    tracker.log_metrics({"x": index})
"""
)

RUN_FOLDERS = (
    """
from hydra import compose, initialize_config_dir
import samexp.config.schema
from tests.conftest import CONF_DIR
"""
    + BARRIER
    + """
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose(config_name="config", return_hydra_config=True)
print(cfg.hydra.run.dir)
"""
)


def four_finished_runs(tmp: Path, outputs: list[str]) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("samexp")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"run-{i}" for i in range(4)]
    assert {r.info.status for r in runs} == {"FINISHED"}


def distinct_run_folders(tmp: Path, outputs: list[str]) -> None:
    folders = [out.strip().splitlines()[-1] for out in outputs]
    assert len(set(folders)) == len(folders), folders


CASES = [
    pytest.param(FIRST_RUNS, 4, four_finished_runs, id="first-runs-on-a-fresh-mlflow-store"),
    pytest.param(RUN_FOLDERS, 2, distinct_run_folders, id="run-folders-in-the-same-second"),
]


@pytest.mark.slow
@pytest.mark.parametrize("snippet, processes, check", CASES)
def test_runs_started_together_all_succeed_apart(
    snippet: str, processes: int, check: Callable[[Path, list[str]], None], tmp_path: Path
):
    outputs = start_together(snippet, processes, tmp_path)
    check(tmp_path, outputs)


def start_together(snippet: str, processes: int, tmp: Path, timeout_s: float = 240) -> list[str]:
    """Start the processes, release them at once when all are ready; their stdout, each exit 0."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", snippet, str(tmp), str(i)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    deadline = time.monotonic() + timeout_s
    try:
        while len(list(tmp.glob("ready-*"))) < processes:
            assert all(p.poll() is None for p in started), "a process died before the start"
            assert time.monotonic() < deadline, "processes never became ready"
            time.sleep(0.01)
        (tmp / "go").touch()
        results = [p.communicate(timeout=timeout_s) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(started, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in results]
