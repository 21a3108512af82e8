"""The demo's answer time: the first prompt on an image (encoder + decoder, both models) against
every further prompt on it (the kept embedding: decoder only), side by side in one run.

    python experiments/bench_demo.py                  # vit_b (random weights), decoder and LoRA
    python experiments/bench_demo.py --models tiny    # quick

A stock `SamPredictor` demo encodes the image again for each model and prompt (`set_image` per
answer): that is the first column, every time. Random weights cost the same FLOPs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.app import answers
from samexp.app.models import load_pair
from samexp.models.build import build_official, build_tiny
from samexp.predict.prompts import parse_prompts


def adapter_file(model: str, kind: str, folder: Path) -> Path:
    base = build_tiny(seed=0) if model == "tiny" else build_official(model, pretrained=False)
    adapter = LoraAdapter(rank=8) if kind == "lora" else DecoderAdapter()
    adapter.apply(base.sam)
    return save_adapter(folder / f"{model}-{kind}.safetensors", base, adapter)


def measure(path: Path, image: np.ndarray, prompts: int, device: str) -> tuple[float, float, bool]:
    """Seconds of the first answer, mean seconds of the next `prompts`, whether one encoder serves
    both models."""
    pair = load_pair(weights=str(path), device=device)
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    boxes = []
    for _ in range(prompts + 1):
        x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
        boxes.append([x0, y0, x0 + rng.uniform(50, w / 2), y0 + rng.uniform(50, h / 2)])
    times = []
    for box in boxes:
        start = time.perf_counter()
        answers.segment(pair, image, parse_prompts(box=box))
        times.append(time.perf_counter() - start)
    return times[0], sum(times[1:]) / prompts, pair.shared_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b"], choices=["tiny", "vit_b"])
    parser.add_argument("--prompts", type=int, default=5, help="prompts after the first")
    parser.add_argument("--device", choices=["cpu", "cuda"],
                        default="cuda" if torch.cuda.is_available() else "cpu")  # fmt: skip
    args = parser.parse_args()
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.device}; a 1024×1024 image, both models "
          "answer each box")  # fmt: skip
    print(f"{'model':<7}{'adapter':<9}{'encoders':<10}{'first s':>9}{'next s':>9}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for kind in ("decoder", "lora"):
                first, later, shared = measure(adapter_file(model, kind, Path(tmp)), image,
                                               args.prompts, args.device)  # fmt: skip
                print(f"{model:<7}{kind:<9}{'1 shared' if shared else '2':<10}{first:>9.3f}"
                      f"{later:>9.4f}{first / later:>7.0f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
