"""The demo benchmark keeps running: first answer against the next ones, for both adapter kinds."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_demo_prints_the_first_and_next_answer_times_side_by_side():
    done = subprocess.run([sys.executable, "experiments/bench_demo.py", "--models", "tiny",
                           "--prompts", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[1]: line.split() for line in done.stdout.splitlines()
            if line.startswith("tiny")}  # fmt: skip
    assert set(rows) == {"decoder", "lora"}
    assert rows["decoder"][2:4] == ["1", "shared"] and rows["lora"][2] == "2"
    for row in rows.values():
        first, later = float(row[-3]), float(row[-2])
        assert first > 0 and later > 0 and row[-1].endswith("x")
