"""The PyTorch vs onnxruntime benchmark keeps running: both backends' figures side by side with their
ratio, for every measure, and the export's cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

MEASURES = ["load s", "image s", "decoder ms", "imports RSS G", "peak RSS G"]


@pytest.mark.slow
def test_bench_onnx_prints_torch_and_onnxruntime_side_by_side_with_ratios():
    done = subprocess.run([sys.executable, "experiments/bench_onnx.py", "--models", "tiny",
                           "--images", "1", "--warmup", "0", "--prompts", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "CPUs; torch" in lines[0] and "onnxruntime" in lines[0]  # the machine line
    rows = {line[7:22].strip(): line[22:].split() for line in lines if line.startswith("tiny   ")}
    assert list(rows)[: len(MEASURES)] == MEASURES
    for measure in MEASURES:
        torch_value, onnx_value, ratio = rows[measure]
        a, b = float(torch_value), float(onnx_value)
        assert a > 0 and b > 0 and ratio.endswith("x"), measure
        assert abs(float(ratio[:-1]) - a / b) <= 0.05 * a / b + 0.01, measure  # shown rounded
    header = next(k for k, line in enumerate(lines) if "export s" in line)
    model, seconds, trace, encoder_mb, decoder_mb, parity = lines[header + 1].split()
    assert model == "tiny" and 0 < float(trace) <= float(seconds)
    assert float(encoder_mb) > 0 and float(decoder_mb) > 0
    assert float(parity) < 1e-3  # the export's own check passed
