"""The speed benchmark keeps running: one pass on the tiny model prints every case with its ratios."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_prints_naive_and_ours_side_by_side_for_every_case():
    done = subprocess.run([sys.executable, "experiments/bench_speed.py", "--models", "tiny"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.endswith(tuple("0123456789"))]
    cases = {row[0] for row in rows if row[1:2] == ["tiny"]}
    assert cases == {"frozen-encoder", "lora-encoder", "lora-sdpa-only"}
    for row in rows:
        if row[1:2] == ["tiny"]:
            assert row[6].endswith("x") and float(row[6][:-1]) > 0  # the speed-up column
