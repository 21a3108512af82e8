"""The speed benchmark keeps running: one pass on the tiny model prints every case with its ratios."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_speed", REPO / "experiments" / "bench_speed.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_prints_naive_and_ours_side_by_side_for_every_case():
    done = subprocess.run([sys.executable, "experiments/bench_speed.py", "--models", "tiny"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.endswith(tuple("0123456789"))]
    cases = {row[0] for row in rows if row[1:2] == ["tiny"]}
    assert cases == set(_load_bench().CASES)
    for row in rows:
        if row[1:2] == ["tiny"]:
            assert row[5].endswith("x") and float(row[5][:-1]) > 0  # the speed-up column
    agreement = [line for line in done.stdout.splitlines() if line.startswith("agreement tiny")]
    assert len(agreement) == 2  # sdpa and blocked
    for line in agreement:
        deltas = [
            float(word.rstrip(","))
            for word in line.split("(")[0].split()
            if word[:1].isdigit() and "e" in word
        ]
        assert deltas and max(deltas) < 1e-4
    (flops,) = [line for line in done.stdout.splitlines() if line.startswith("flops tiny:")]
    assert "frozen-decoder step" in flops and "frozen-lora step" in flops and "bound" in flops
