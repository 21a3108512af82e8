"""`python -m samexp.predict` on PyTorch against onnxruntime: per-image latency, decoder latency and
peak memory of the same fine-tuned model, side by side, plus what exporting it costs.

    python experiments/bench_onnx.py                        # tiny and vit_b (random weights)
    python experiments/bench_onnx.py --models tiny          # quick
    python experiments/bench_onnx.py --models vit_b vit_t sam2.1_hiera_t --images 5

Each model gets a LoRA r=8 (its B drawn at random, so the merge changes the weights), is saved as an
adapter file and exported with `python -m samexp.export format=onnx`'s function (the parity check
included). Then each backend runs in its own fresh interpreter, so its peak RSS is its own: the
predictor `python -m samexp.predict` builds (`load_predictor`: the merged model in eval mode with
the attention kernel predict picks, or `OnnxPredictor` over the two graphs), then images through
`predict_prompts` (set_image + one box decode; warm-up images excluded, median of the timed ones)
and, on the last image, the decoder alone per prompt (`decode_prompts`, median). Both backends
import torch (samexp's image pipeline runs on it), so "imports" RSS is the floor either pays.
Random weights cost the same FLOPs as the real ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("tiny", "vit_b", "vit_t", "sam2_tiny", "sam2.1_hiera_t")
BACKENDS = ("torch", "onnx")
SHAPE = (768, 1024)  # H×W of the generated photos (SAM resizes the longest side to 1024)
BOX = [100.0, 120.0, 700.0, 560.0]
# what each table row reports: (key in a child's result, label, format)
ROWS = (("load_s", "load s", "{:.3f}"), ("image_s", "image s", "{:.3f}"),
        ("decoder_ms", "decoder ms", "{:.2f}"), ("imports_gb", "imports RSS G", "{:.2f}"),
        ("peak_gb", "peak RSS G", "{:.2f}"))  # fmt: skip


def rss_gb() -> float:
    """This process's peak resident set so far: VmHWM, which starts afresh at exec (ru_maxrss
    keeps the high-water mark of the process forked before the exec: the parent's exports)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def build(name: str):
    from samexp.models.build import build_official, build_tiny

    if name == "tiny":
        return build_tiny(seed=0)
    if name == "vit_t":
        from samexp.models.mobile import build_mobile

        return build_mobile(pretrained=False)
    if name == "sam2_tiny":
        from samexp.models.sam2 import build_sam2_tiny

        return build_sam2_tiny(seed=0)
    if name.startswith("sam2"):
        from samexp.models.sam2 import build_sam2

        return build_sam2(name, pretrained=False)
    return build_official(name, pretrained=False)


def export_model(name: str, folder: Path) -> dict:
    """Save a LoRA fine-tune of `name` and export it to ONNX; seconds and sizes."""
    import torch

    from samexp.adapters.io import save_adapter
    from samexp.adapters.lora import LoraAdapter
    from samexp.export import export

    base = build(name)
    adapter = LoraAdapter(rank=8)
    adapter.apply(base.sam)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fine-tune that moved: B != 0, so merging changes the weights
        for p in base.sam.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    weights = save_adapter(folder / "adapter.safetensors", base, adapter)
    del base, adapter
    started = time.perf_counter()
    onnx = export(weights=str(weights), format="onnx", out=str(folder / "onnx"))
    seconds = time.perf_counter() - started
    parity = json.loads((onnx / "parity.json").read_text())
    return {"weights": str(weights), "onnx": str(onnx), "export_s": seconds,
            "trace_s": parity["export_s"], "max_logits": parity["max_logits"],
            "encoder_mb": (onnx / "encoder.onnx").stat().st_size / 1e6,
            "decoder_mb": (onnx / "decoder.onnx").stat().st_size / 1e6}  # fmt: skip


def measure(backend: str, source: str, images: int, warmup: int, prompts: int) -> dict:
    """In a fresh interpreter: build the predictor predict builds, time images and decodes."""
    import numpy as np
    import torch

    from samexp.predict.config import Backend, PredictConfig
    from samexp.predict.prompted import decode_prompts, predict_prompts
    from samexp.predict.prompts import parse_prompts
    from samexp.predict.run import load_predictor

    imports_gb = rss_gb()
    where = {"onnx": source} if backend == "onnx" else {"weights": source}
    started = time.perf_counter()
    predictor, _ = load_predictor(PredictConfig(backend=Backend(backend), **where),
                                  torch.device("cpu"))  # fmt: skip
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    box = parse_prompts(box=BOX)
    times = []
    for k in range(warmup + images):
        photo = rng.integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
        started = time.perf_counter()
        predict_prompts(predictor, photo, box)
        if k >= warmup:
            times.append(time.perf_counter() - started)
    decodes = []
    for _ in range(prompts + 1):  # the first decode warms up
        started = time.perf_counter()
        decode_prompts(predictor, box)
        decodes.append(time.perf_counter() - started)
    return {"load_s": load_s, "image_s": statistics.median(times),
            "decoder_ms": 1e3 * statistics.median(decodes[1:]), "imports_gb": imports_gb,
            "peak_gb": rss_gb()}  # fmt: skip


def in_fresh_process(backend: str, source: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", backend, source, "--images", str(args.images),
               "--warmup", str(args.warmup), "--prompts", str(args.prompts)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{backend} on {source} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    """The line `lscpu | grep 'Model name'` would give, the core count and both runtimes."""
    import onnxruntime
    import torch

    info = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
             if line.startswith("model name")] if info.exists() else []  # fmt: skip
    cpu = names[0] if names else platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} CPUs; torch {torch.__version__} ({torch.get_num_threads()} "
            f"threads), onnxruntime {onnxruntime.__version__} (its default threads, CPU)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["tiny", "vit_b"])
    parser.add_argument("--images", type=int, default=3, help="timed images (median)")
    parser.add_argument("--warmup", type=int, default=1, help="images before the timed ones")
    parser.add_argument("--prompts", type=int, default=20, help="timed decoder-only prompts")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.images, args.warmup, args.prompts)))
        return
    logging.basicConfig(level=logging.WARNING)
    print(machine())
    print(f"{SHAPE[1]}×{SHAPE[0]} generated photos, one box; {args.warmup} warm-up + "
          f"{args.images} timed images (median), {args.prompts} decoder-only prompts (median); "
          "each backend in a fresh interpreter", flush=True)  # fmt: skip
    width = max(7, *(len(m) + 1 for m in args.models))
    header = f"{'model':<{width}}{'measure':<15}{'torch':>10}{'onnx':>10}{'torch/onnx':>12}"
    print(header)
    print("-" * len(header), flush=True)
    exports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            folder = Path(tmp) / model
            folder.mkdir()
            exports[model] = done = export_model(model, folder)
            got = {"torch": in_fresh_process("torch", done["weights"], args),
                   "onnx": in_fresh_process("onnx", done["onnx"], args)}  # fmt: skip
            for key, label, fmt in ROWS:
                a, b = got["torch"][key], got["onnx"][key]
                print(f"{model:<{width}}{label:<15}{fmt.format(a):>10}{fmt.format(b):>10}"
                      f"{a / b:>11.2f}x", flush=True)  # fmt: skip
    print(f"\n{'model':<{width}}{'export s':>9}{'trace s':>9}{'encoder MB':>12}{'decoder MB':>12}"
          f"{'parity max|Δlogit|':>20}")  # fmt: skip
    for model, done in exports.items():
        print(f"{model:<{width}}{done['export_s']:>9.1f}{done['trace_s']:>9.1f}"
              f"{done['encoder_mb']:>12.1f}{done['decoder_mb']:>12.1f}{done['max_logits']:>20.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
