"""Speed and memory of samexp's training paths against the naive loop, side by side in one table.

    python experiments/bench_speed.py                 # tiny and vit_b (random weights, same FLOPs)
    python experiments/bench_speed.py --models tiny   # quick

Each case runs in its own process so peak RSS belongs to that case alone.
  frozen-encoder: seconds per epoch after the first, re-encoding every image (naive) vs the
                  embedding cache (ours); the first epoch costs the same encoder forwards.
  lora-encoder:   seconds per optimizer step, LoRA r=8 on the encoder's q/v, batch 1: stock attention
                  (naive) vs SDPA attention + per-block activation checkpointing (ours).
  lora-sdpa-only: the same with SDPA attention alone (no checkpointing).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch

IMAGES = 2


def _model(name: str):
    from samexp.models.build import build_official, build_tiny

    return build_tiny(seed=0) if name == "tiny" else build_official(name, pretrained=False)


def _batch(size: int, n: int):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[size * 0.2, size * 0.2, size * 0.7, size * 0.8]]).repeat(n, 1)
    return images, [(size, size)] * n, boxes


def frozen_encoder(model: str, ours: bool, epochs: int) -> dict:
    from samexp.adapters.decoder import DecoderAdapter
    from samexp.models.cached_encoder import CachedEncoder
    from samexp.models.embedding_cache import EmbeddingCache
    from samexp.models.seam import Prompts, decode, encode

    base = _model(model)
    DecoderAdapter().apply(base.sam)
    images, sizes, boxes = _batch(base.img_size, IMAGES)
    cached = CachedEncoder(EmbeddingCache(tempfile.mkdtemp()), base.weights_id) if ours else None
    optimizer = torch.optim.AdamW([p for p in base.sam.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for i in range(IMAGES):  # batch 1, as the reference loop
            if cached is not None:
                emb = cached(base.sam, images[i : i + 1], sizes[i : i + 1])
            else:
                with torch.no_grad():
                    emb = encode(base.sam, images[i : i + 1], sizes[i : i + 1])
            low_res, _ = decode(base.sam, emb, torch.tensor([0]), Prompts(boxes=boxes[i : i + 1]))
            optimizer.zero_grad()
            low_res.sigmoid().mean().backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    later = times[1:]
    return {
        "first": times[0],
        "per_epoch": sum(later) / len(later),
        "images_per_s": IMAGES / (sum(later) / len(later)),
    }


def lora_encoder(model: str, ours: bool, steps: int, checkpointing: bool = True) -> dict:
    from samexp.adapters.lora import LoraAdapter
    from samexp.models.attention import use_sdpa
    from samexp.models.checkpointing import enable_checkpointing
    from samexp.models.seam import Prompts, decode, encode, upscale

    base = _model(model)
    LoraAdapter(rank=8).apply(base.sam)
    if ours:
        use_sdpa(base.sam)
        if checkpointing:
            enable_checkpointing(base.sam)
    images, sizes, boxes = _batch(base.img_size, 1)
    optimizer = torch.optim.AdamW([p for p in base.sam.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        start = time.perf_counter()
        low_res, _ = decode(
            base.sam, encode(base.sam, images, sizes), torch.tensor([0]), Prompts(boxes=boxes)
        )
        optimizer.zero_grad()
        upscale(base.sam, low_res).sigmoid().mean().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    per_step = sum(times[1:]) / steps
    return {"per_step": per_step, "images_per_s": 1 / per_step}


def run_case(case: str, model: str, ours: bool, repeat: int) -> dict:
    torch.manual_seed(0)
    if case == "frozen-encoder":
        result = frozen_encoder(model, ours, repeat)
    else:
        result = lora_encoder(model, ours, repeat, checkpointing=case == "lora-encoder")
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["tiny", "vit_b"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.case:  # a child process: one measurement, JSON on stdout
        print(json.dumps(run_case(args.case, args.model, args.ours, args.repeat)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    header = f"{'case':<16}{'model':<7}{'naive':>12}{'ours':>12}{'speed-up':>10}{'naive RSS':>11}{'ours RSS':>10}{'RSS ratio':>10}"
    print(header)
    print("-" * len(header))
    for model in args.models:
        for case, key, unit, repeat in (
            ("frozen-encoder", "per_epoch", "s/epoch", 3),
            ("lora-encoder", "per_step", "s/step", 2),  # ours: SDPA + checkpointing (memory)
            ("lora-sdpa-only", "per_step", "s/step", 2),  # ours: SDPA alone (speed)
        ):
            out = {}
            for ours in (False, True):
                cmd = [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--model",
                    model,
                    "--repeat",
                    str(repeat),
                ] + (["--ours"] if ours else [])
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                out[ours] = json.loads(done.stdout.strip().splitlines()[-1])
            naive, ours_ = out[False], out[True]
            print(f"{case:<16}{model:<7}{naive[key]:>9.3f} {unit[:1]}{ours_[key]:>11.4f} {unit[:1]}"
                  f"{naive[key] / ours_[key]:>9.1f}x{naive['peak_rss_gb']:>10.2f}G{ours_['peak_rss_gb']:>9.2f}G"
                  f"{ours_['peak_rss_gb'] / naive['peak_rss_gb']:>10.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
