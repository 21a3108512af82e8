"""ONNX export of every model samexp supports, at full size: export time, file sizes and the
parity check `python -m samexp.export format=onnx` runs (onnxruntime against PyTorch), side by side.

    python experiments/onnx_parity.py                          # vit_b, vit_t, sam2.1_hiera_t
    python experiments/onnx_parity.py --models vit_h sam2.1_hiera_l --image photo.jpg

Random weights (nothing downloads), LoRA r=8 applied with its B drawn as if trained, so what is
exported is a fine-tuned model with the adapter merged; each model in its own process, so one
model's memory never counts against the next.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = ["vit_b", "vit_t", "sam2.1_hiera_t"]
RING = REPO.parent / "shared" / "datasets" / "rings" / "test" / "images" / "ring_test_1.jpg"


def one(model: str, image: str | None, folder: Path) -> dict:
    """Build, adapt, export and check one model in this process; its figures."""
    import torch

    from samexp.adapters.io import save_adapter
    from samexp.adapters.lora import LoraAdapter
    from samexp.export import export

    if model == "tiny":
        from samexp.models.build import build_tiny

        base = build_tiny()
    elif model.startswith("sam2"):
        from samexp.models.sam2 import build_sam2, build_sam2_tiny

        base = build_sam2_tiny() if model == "sam2_tiny" else build_sam2(model, pretrained=False)
    elif model == "vit_t":
        from samexp.models.mobile import build_mobile

        base = build_mobile(pretrained=False)
    else:
        from samexp.models.build import build_official

        base = build_official(model, pretrained=False)
    adapter = LoraAdapter(rank=8)
    adapter.apply(base.sam)
    with torch.no_grad():
        for name, p in base.sam.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02, generator=torch.Generator().manual_seed(0))
    weights = save_adapter(folder / "adapter.safetensors", base, adapter)
    del base
    started = time.perf_counter()
    out = export(weights=str(weights), format="onnx", out=str(folder / "onnx"), image=image)
    total = time.perf_counter() - started
    parity = json.loads((out / "parity.json").read_text())
    size = {p.name: p.stat().st_size for p in out.iterdir()}
    return {
        "model": model,
        "export_s": parity["export_s"],
        "command_s": round(total, 1),
        "encoder_mb": sum(v for k, v in size.items() if k.startswith("encoder")) / 1e6,
        "decoder_mb": sum(v for k, v in size.items() if k.startswith("decoder")) / 1e6,
        "features": parity["max_features"],
        "logits": parity["max_logits"],
        "iou": parity["max_iou"],
        "graph_masks": parity["graph_masks"],
        "pixels": sum(c["mask_pixels_differ"] for c in parity["cases"].values()),
        "of": sum(c["mask_pixels"] for c in parity["cases"].values()),
        "encode_s": parity["encode_s"],
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "passed": parity["passed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT)
    parser.add_argument("--image", default=str(RING) if RING.is_file() else None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process's model
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.image, Path(tmp))))
        return
    rows = []
    for model in args.models:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            model,
            *(["--image", args.image] if args.image else []),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{model}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {cpu_name()}; opset 17; "
        f"image {args.image or 'generated'}"
    )
    head = (
        f"{'model':<16}{'export s':>9}{'enc MB':>9}{'dec MB':>8}{'features':>10}{'logits':>10}"
        f"{'IoU':>10}{'graph masks':>12}{'mask px differ':>20}{'encode torch/ort s':>20}{'peak GB':>8}"
    )
    print(head)
    for r in rows:
        enc = f"{r['encode_s']['pytorch']:.2f}/{r['encode_s']['onnxruntime']:.2f}"
        print(
            f"{r['model']:<16}{r['export_s']:>9.1f}{r['encoder_mb']:>9.1f}{r['decoder_mb']:>8.1f}"
            f"{r['features']:>10.1e}{r['logits']:>10.1e}{r['iou']:>10.1e}{r['graph_masks']:>12.1e}"
            f"{r['pixels']:>9} of {r['of']:<8}{enc:>20}{r['peak_gb']:>8.1f}"
            + ("" if r["passed"] else "  FAILED")
        )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
