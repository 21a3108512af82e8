"""The data-loading benchmark keeps running: a quick synthetic pass prints naive and ours."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_data_prints_naive_and_cached_loader_throughput():
    done = subprocess.run([sys.executable, "experiments/bench_data.py", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {
        line.split()[0]: line.split() for line in done.stdout.splitlines() if line.endswith("x")
    }
    assert set(rows) == {"naive", "ours"}
    for row in rows.values():
        assert float(row[4]) > 0  # images/s
    assert "cache: 4 of 4 images" in done.stdout
