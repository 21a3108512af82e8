"""`make bench-gpu` is ready for a lent GPU: without one it stops at once and says what to do, and
its tiny CPU pass runs every benchmark under experiments/ into one folder of tables."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_without_cuda_stops_before_any_benchmark_and_names_the_cpu_pass(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stopped:
        _load("bench_gpu").check_device("cuda", tiny=False)
    assert "no CUDA device" in str(stopped.value) and "--device cpu --tiny" in str(stopped.value)


def test_bench_gpu_on_cpu_runs_only_the_tiny_pass():
    with pytest.raises(SystemExit, match="add --tiny"):
        _load("bench_gpu").check_device("cpu", tiny=False)


def test_bench_gpu_covers_every_benchmark_and_fits_eight_minutes():
    bench_gpu = _load("bench_gpu")
    scripts = {p.stem for p in (REPO / "experiments").glob("bench_*.py")} - {"bench_gpu"}
    assert {b.name for b in bench_gpu.BENCHES} | set(bench_gpu.NOT_RUN) == scripts
    assert sum(b.limit_s for b in bench_gpu.BENCHES) <= bench_gpu.BUDGET_S <= 8 * 60 - 20
    speed = next(b for b in bench_gpu.BENCHES if b.name == "bench_speed")
    assert speed.argv("cuda", tiny=False)[-4:] == ["--precision", "bf16", "--device", "cuda"]


@pytest.mark.slow
def test_bench_gpu_tiny_cpu_pass_writes_every_table_with_its_rows(tmp_path):
    done = subprocess.run([sys.executable, "experiments/bench_gpu.py", "--device", "cpu", "--tiny",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()[1:]
    bench_gpu = _load("bench_gpu")
    assert {line.split()[0]: line.split()[1] for line in summary} == {
        **{b.name: "ok" for b in bench_gpu.BENCHES},
        **{name: "not" for name in bench_gpu.NOT_RUN},
    }
    speed = (tmp_path / "bench_speed.txt").read_text().splitlines()
    cases = set(_load("bench_speed").CASES)
    rows = {(w[0], w[1]): line for line in speed if (w := line.split()) and w[0] in cases}
    assert {case for case, model in rows if model == "tiny"} == cases
    assert {case for case, model in rows if model == "sam2_tiny"} == cases
    assert "n/a: model.encoder_size" in rows["encoder-half", "sam2_tiny"]  # SAM 2.1 refuses it
    assert rows["lora-encoder", "sam2_tiny"].split()[5].endswith("x")  # measured, with speed-up
    side = speed[speed.index(next(line for line in speed if line.startswith("side by side"))) :]
    assert side[1].split() == ["tiny", "sam2_tiny"]
    assert any(line.startswith("lora-encoder s/step") for line in side)
    assert any(line.startswith("frozen-decoder G RSS") for line in side)
    demo = (tmp_path / "bench_demo.txt").read_text()
    assert "tiny   decoder" in demo and "tiny   lora" in demo
    assert "peak RSS" in (tmp_path / "bench_auto.txt").read_text()
    assert "ours" in (tmp_path / "bench_data.txt").read_text()
