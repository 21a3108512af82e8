"""Every benchmark under experiments/ on one CUDA GPU, each under its own time limit and all of
them under 8 minutes, their tables written to a folder: `make bench-gpu`.

    python experiments/bench_gpu.py                          # CUDA: SDPA kernels, bf16 autocast
    python experiments/bench_gpu.py --out DIR                # tables into DIR (default bench-gpu/)
    python experiments/bench_gpu.py --device cpu --tiny      # the tiny CPU pass the tests run

Without a CUDA device it stops at once and says so, unless told `--device cpu --tiny`.
On CUDA, bench_speed runs ours with SDPA (the `auto` kernel there) and bf16 autocast against the
naive fp32 loop, for vit_b, vit_t and SAM 2.1 hiera_t/hiera_s; bench_demo and bench_auto put their
models on the GPU (the demo's predictor takes SDPA by itself); bench_data measures the loader
that feeds the GPU (CPU work) as it is. bench_inspect and bench_bounded_input run no model, so a
GPU changes nothing they measure: they are listed as not run (`NOT_RUN`, in summary.txt too).

Each benchmark runs in its own process group, killed at its limit (what it printed until then is
kept); the limits add up to BUDGET_S, so the whole run ends in time even if every one times out.
Why the limits should hold on one H100 (16 CPU cores): on the 2-core CPU the work is one vit_b
encoder forward ≈ 5-8 s (972 GFLOP) and a LoRA step ≈ 12-20 s; on an H100 in bf16 both are
milliseconds, so each bench_speed case costs its process start, CUDA context and random init
(≈ 2-4 s; 40 processes ≈ 2-3 min), plus ≈ 30 s of CPU-side FLOP counting and kernel agreement.
bench_demo and bench_auto take one vit_b encoder pass per image (2 and 4 images) plus process
starts; bench_data is CPU work of ~10 s here.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET_S = 420  # the limits below add up to it: under 8 minutes with the driver's start


@dataclass(frozen=True)
class Bench:
    name: str  # also its table's file name
    gpu: tuple[str, ...]  # arguments of the full run
    tiny: tuple[str, ...]  # arguments of the tiny pass
    limit_s: int
    takes_device: bool = False  # given --device (the others measure CPU work)

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"

    def argv(self, device: str, tiny: bool) -> list[str]:
        return [
            *(self.tiny if tiny else self.gpu),
            *(("--device", device) if self.takes_device else ()),
        ]


BENCHES = (
    Bench("bench_speed", ("--models", "vit_b", "vit_t", "sam2.1_hiera_t", "sam2.1_hiera_s",
                          "--precision", "bf16"), ("--models", "tiny", "sam2_tiny"), 270, True),
    Bench("bench_demo", ("--models", "vit_b"), ("--models", "tiny", "--prompts", "2"), 45, True),
    Bench("bench_auto", ("--model", "vit_b"), ("--model", "tiny", "--side", "600", "800",
          "--points-per-side", "4", "--max-side", "400"), 75, True),
    Bench("bench_data", (), ("--quick",), 30),
)  # fmt: skip
# the benchmarks under experiments/ that run no model: a GPU changes nothing they measure
NOT_RUN = {
    "bench_inspect": "lists and decodes files (CPU), no model",
    "bench_bounded_input": "parses hostile files (CPU), no model; its 'before' alias bomb alone "
    "runs into its 60 s timeout by design",
    "bench_onnx": "onnxruntime runs on the CPU here (its CPU provider only): PyTorch on the GPU "
    "against it would compare devices, not runtimes",
}


def check_device(device: str, tiny: bool) -> None:
    """Stop before any benchmark starts when the run cannot be what was asked for."""
    if device == "cpu" and not tiny:
        sys.exit(
            "bench-gpu: --device cpu runs only the tiny pass (add --tiny); the full-size CPU "
            "tables are `make bench`, `make bench-data` and `make bench-demo`"
        )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
            sys.exit(
                f"bench-gpu: no CUDA device (torch {torch.__version__}, {built}, sees none): run "
                "it on a machine with an NVIDIA GPU, or pass --device cpu --tiny for the tiny CPU "
                "pass the tests run"
            )


def run(bench: Bench, argv: list[str], limit_s: float, out: Path) -> tuple[str, float]:
    """Run one benchmark into `out/<name>.txt` (stderr into `<name>.err` when it fails); its
    status ("ok", "failed (exit N)", "timed out") and seconds. The process group is killed at
    the limit, so bench_speed's forkserver and case processes go with it."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (
        open(out / f"{bench.name}.txt", "w") as stdout,
        open(out / f"{bench.name}.err", "w") as err,
    ):
        process = subprocess.Popen([sys.executable, str(bench.script), *argv], stdout=stdout,
                                   stderr=err, cwd=HERE.parent, env=env, start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout=limit_s)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"timed out at {limit_s:.0f} s"
    if status == "ok":
        (out / f"{bench.name}.err").unlink()
    return status, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes (the tests)")
    parser.add_argument("--out", type=Path, default=Path("bench-gpu"), help="folder for the tables")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES],
                        help="these benchmarks only")  # fmt: skip
    args = parser.parse_args()
    check_device(args.device, args.tiny)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUDGET_S
    lines = [f"{'benchmark':<22}{'status':<24}{'seconds':>8}{'limit':>7}"]
    failed = False
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        limit = min(bench.limit_s, max(1.0, deadline - time.monotonic()))
        status, seconds = run(bench, bench.argv(args.device, args.tiny), limit, args.out)
        failed |= status != "ok"
        lines.append(f"{bench.name:<22}{status:<24}{seconds:>8.1f}{limit:>7.0f}")
        print(lines[-1], flush=True)
    lines += [f"{name:<22}not run: {why}" for name, why in NOT_RUN.items()]
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    print(f"tables in {args.out}/ (summary.txt, <benchmark>.txt)")
    if failed:
        sys.exit(f"bench-gpu: not every benchmark finished; see {args.out}/*.err")


if __name__ == "__main__":
    main()
