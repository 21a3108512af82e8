"""Speed and memory of samexp's training paths against the naive loop, side by side in one table.

    python experiments/bench_speed.py                 # tiny, vit_b, vit_t, SAM 2.1 hiera_t and hiera_s
    python experiments/bench_speed.py --models tiny   # quick (sam2_tiny: the tiny SAM 2.1)
    python experiments/bench_speed.py --models vit_b sam2.1_hiera_t --cases lora-encoder frozen-decoder
    python experiments/bench_speed.py --models vit_b vit_t --cases encoder-fwd lora-encoder
    python experiments/bench_speed.py --device cuda --precision bf16   # on a GPU

The naive loop is the ring study's: batch 1, fp32, stock attention, every image re-encoded at
every step. Each measurement runs in its own process, so peak RSS belongs to that case alone: a
new child forked from a forkserver that has imported torch and samexp and run nothing, so no case
inherits another's tensors or allocator pools, and none pays the ~3 s of imports again. A forked
child counts the imported libraries' code pages only once it touches them, so its peak RSS runs
about 0.3 GB under a fresh interpreter's (tiny: 0.41 G against 0.69 G); its own memory is the same.
  encoder-fwd:     no-grad encoder forward per image (evaluation, the cache's first epoch):
                   stock attention vs ours (blocked on CPU, SDPA on CUDA).
  encoder-half:    the same at the native size (naive) vs `model.encoder_size` = half of it (ours;
                   512 for vit_b): less work, less detail.
  frozen-decoder:  s/epoch after the first, decoder fine-tune: re-encode every image (naive) vs the
                   embedding cache (ours); the first epoch costs the same encoder forwards.
  frozen-lora:     the same with LoRA r=8 on the decoder's attention instead of the whole decoder.
  lora-encoder:    s/optimizer step, LoRA r=8 on the encoder's q/v: stock vs our attention kernel.
  lora-ckpt:       the same plus per-block activation checkpointing (memory).
Then the numeric agreement of the fast kernels with the stock attention (one vit_b-sized block).
All models are random weights (same FLOPs as the real ones) and run through the family-agnostic
seam (samexp.models.seam, adapters by role), so every model does the same work per case.
MobileSAM (vit_t) runs encoder-fwd and lora-encoder only: the other cases measure samexp's ViT
kernels, the encoder size and the embedding cache, which TinyViT's encoder does not use or change.
SAM 2.1 (sam2.1_hiera_t/_s) runs every case its family can: Hiera already attends through SDPA, so
samexp's ViT kernels have nothing to replace (naive and ours differ only by fused AdamW, precision
and, in the frozen cases, the cache), and `model.encoder_size` is refused, which its row says.
A case a model refuses prints `n/a` with the refusal. With several models measured, a second table
sets each model's figures (ours) beside the reference's (vit_b when measured, else the first), with
the ratio reference/model, peak memory, parameters and encoder FLOPs on the same input.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from samexp.adapters.lora import LoraAdapter

IMAGES = 2
SAM = ("tiny", "vit_b", "vit_l", "vit_h", "vit_t")
SAM2 = ("sam2_tiny", "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")
ONLY = {"vit_t": ("encoder-fwd", "lora-encoder")}  # a model's cases, where not all of them
REFERENCE = "vit_b"  # what the side-by-side table compares the other models to, when measured


def _model(name: str, encoder_size: int | None = None):
    from samexp.models.build import build_official, build_tiny
    from samexp.models.mobile import build_mobile
    from samexp.models.sam2 import build_sam2, build_sam2_tiny

    if name == "tiny":
        return build_tiny(seed=0, encoder_size=encoder_size)
    if name == "vit_t":
        return build_mobile(pretrained=False, encoder_size=encoder_size)
    if name == "sam2_tiny":
        return build_sam2_tiny(seed=0, encoder_size=encoder_size)
    if name in SAM2:
        return build_sam2(name, pretrained=False, encoder_size=encoder_size)
    return build_official(name, pretrained=False, encoder_size=encoder_size)


def _decoder_lora(sam) -> LoraAdapter:
    """LoRA r=8 on the q/v projections of the mask decoder's transformer, wherever the family
    keeps its decoder (SAM: mask_decoder, SAM 2: sam_mask_decoder; same layer names inside)."""
    from samexp.adapters.lora import LoraAdapter
    from samexp.models.roles import roles

    decoder = re.escape(roles(sam).mask_decoder)
    return LoraAdapter(rank=8, target_modules=rf"{decoder}\.transformer\..*(q_proj|v_proj)")


def _batch(size: int, n: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[size * 0.2, size * 0.2, size * 0.7, size * 0.8]]).repeat(n, 1)
    return images.to(device), [(size, size)] * n, boxes.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, repeat: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


class NotApplicable(Exception):
    """A case the model cannot run as measured (its builder refused the setting, or the model
    has nothing the case changes): its row says `n/a` and why."""


class Setup:
    """One case's model, optimizer and autocast, naive or ours."""

    def __init__(self, model: str, ours: bool, device: str, precision: str, adapter=None,
                 encoder_size: int | None = None, checkpointing: bool = False):  # fmt: skip
        """`adapter(sam)` gives the adapter to apply (it may look up the model's roles)."""
        from samexp.config.errors import SamexpError
        from samexp.models.attention import choose_kernel, set_attention
        from samexp.models.checkpointing import enable_checkpointing
        from samexp.training.precision import mixed_precision

        self.device = torch.device(device)
        try:
            self.base = _model(model, encoder_size)
        except SamexpError as refusal:  # e.g. SAM 2.1 refuses model.encoder_size
            raise NotApplicable(str(refusal)) from refusal
        # before the adapter: the blocks keep their forward whatever the adapter wraps inside them
        if checkpointing and not enable_checkpointing(self.base.sam):
            raise NotApplicable("its family's roles name no image-encoder blocks to checkpoint")
        if adapter is not None:
            adapter(self.base.sam).apply(self.base.sam)
        # vit_t, SAM 2: stock either way (TinyViT's attention is its own, Hiera's is SDPA already)
        self.kernel = choose_kernel(
            self.base.sam, "auto" if ours else "stock", self.device, "kernel"
        )
        set_attention(self.base.sam, self.kernel)
        self.base.sam.to(self.device)
        # the naive loop is fp32 by definition; autocast is one of our speed-ups
        self.amp = mixed_precision(precision if ours else "fp32", self.device)
        params = [p for p in self.base.sam.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=1e-5, fused=ours) if params else None

    def step(self, embeddings_fn, images, sizes, boxes, upscale_loss: bool) -> None:
        from samexp.models.seam import Prompts, decode, upscale

        with self.amp.autocast():
            emb = embeddings_fn(images, sizes)
            low_res, _ = decode(self.base.sam, emb, torch.tensor([0], device=self.device),
                                Prompts(boxes=boxes))  # fmt: skip
        logits = upscale(self.base.sam, low_res.float()) if upscale_loss else low_res.float()
        self.optimizer.zero_grad()
        self.amp.backward(logits.sigmoid().mean())
        self.amp.step(self.optimizer)


def encoder_forward(model: str, ours: bool, repeat: int, device: str, precision: str,
                    half: bool = False) -> dict:  # fmt: skip
    from samexp.models.build import OFFICIAL_IMG_SIZE
    from samexp.models.seam import encode

    native = 256 if "tiny" in model else OFFICIAL_IMG_SIZE  # the tiny builders' default; else 1024
    s = Setup(model, ours, device, precision, encoder_size=native // 2 if half else None)
    images, sizes, _ = _batch(s.base.img_size, 1, s.device)

    def forward():
        with torch.no_grad(), s.amp.autocast():
            encode(s.base.sam, images, sizes)

    times = _timed(forward, repeat + 1, s.device)[1:]  # the first warms up allocators and kernels
    per_image = sum(times) / len(times)
    return {"value": per_image, "images_per_s": 1 / per_image}


def frozen_encoder(model: str, ours: bool, epochs: int, device: str, precision: str,
                   lora: bool) -> dict:  # fmt: skip
    from samexp.adapters.decoder import DecoderAdapter
    from samexp.models.cached_encoder import CachedEncoder
    from samexp.models.embedding_cache import EmbeddingCache
    from samexp.models.seam import encode

    adapter = _decoder_lora if lora else (lambda sam: DecoderAdapter())
    s = Setup(model, ours, device, precision, adapter=adapter)
    images, sizes, boxes = _batch(s.base.img_size, IMAGES, s.device)
    if ours:
        cached = CachedEncoder(EmbeddingCache(tempfile.mkdtemp()), s.base.identity)
        embeddings = lambda im, sz: cached(s.base.sam, im, sz)  # noqa: E731
    else:

        def embeddings(im, sz):
            with torch.no_grad():
                return encode(s.base.sam, im, sz)

    def epoch():
        for i in range(IMAGES):  # batch 1, as the reference loop
            s.step(embeddings, images[i : i + 1], sizes[i : i + 1], boxes[i : i + 1], False)

    times = _timed(epoch, epochs, s.device)
    later = sum(times[1:]) / len(times[1:])
    return {"value": later, "first": times[0], "images_per_s": IMAGES / later}


def lora_encoder(model: str, ours: bool, steps: int, device: str, precision: str,
                 checkpointing: bool) -> dict:  # fmt: skip
    from samexp.adapters.lora import LoraAdapter
    from samexp.models.seam import encode

    s = Setup(model, ours, device, precision, adapter=lambda sam: LoraAdapter(rank=8),
              checkpointing=checkpointing and ours)  # fmt: skip
    images, sizes, boxes = _batch(s.base.img_size, 1, s.device)
    embeddings = lambda im, sz: encode(s.base.sam, im, sz)  # noqa: E731
    times = _timed(lambda: s.step(embeddings, images, sizes, boxes, True), steps + 1, s.device)
    per_step = sum(times[1:]) / steps
    return {"value": per_step, "images_per_s": 1 / per_step}


CASES = {  # name: (unit, repetitions, measure(model, ours, repeat, device, precision))
    "encoder-fwd": ("s/img", 2, encoder_forward),
    "encoder-half": ("s/img", 2, lambda m, o, r, d, p: encoder_forward(m, o, r, d, p, half=o)),
    "frozen-decoder": ("s/epoch", 3, lambda m, o, r, d, p: frozen_encoder(m, o, r, d, p, lora=False)),
    "frozen-lora": ("s/epoch", 3, lambda m, o, r, d, p: frozen_encoder(m, o, r, d, p, lora=True)),
    "lora-encoder": ("s/step", 2, lambda m, o, r, d, p: lora_encoder(m, o, r, d, p, checkpointing=False)),
    "lora-ckpt": ("s/step", 2, lambda m, o, r, d, p: lora_encoder(m, o, r, d, p, checkpointing=True)),
}  # fmt: skip


PRELOAD = ("__main__", "samexp.models.build", "samexp.models.mobile", "samexp.models.sam2",
           "samexp.models.seam", "samexp.models.attention", "samexp.models.checkpointing",
           "samexp.models.cached_encoder", "samexp.models.embedding_cache", "samexp.adapters.lora",
           "samexp.adapters.decoder", "samexp.training.precision")  # fmt: skip


def _fresh_processes() -> ProcessPoolExecutor:
    """One new process per measurement (max_tasks_per_child=1), forked from a server that has
    imported what the cases use and nothing more: no case's tensors, allocator pools or threads
    reach another case, and the imports are paid once. Measures are looked up by name, so the
    children need nothing pickled but the case's arguments."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1)


def run_case(case: str, model: str, ours: bool, repeat: int, device: str, precision: str) -> dict:
    torch.manual_seed(0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        result = CASES[case][2](model, ours, repeat, device, precision)
    except NotApplicable as why:
        return {"n/a": str(why)}
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if device == "cuda":
        result["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def agreement(model: str) -> list[str]:
    """Max |Δ| of the fast kernels against stock attention on one block of `model`'s global
    attention size, forward and input gradient, fp32 on CPU."""
    from segment_anything.modeling.image_encoder import Attention

    from samexp.models.attention import FORWARDS, choose_kernel

    base = _model(model)
    if choose_kernel(base.sam, "auto", torch.device("cpu"), "kernel") == "stock":
        return [f"agreement {model}: n/a, its image encoder has no segment_anything ViT attention "
                "for samexp's kernels to replace"]  # fmt: skip
    encoder = base.sam.image_encoder
    grid = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
    dim, heads = encoder.pos_embed.shape[-1], encoder.blocks[0].attn.num_heads
    torch.manual_seed(0)
    attn = Attention(dim, heads, qkv_bias=True, use_rel_pos=True, input_size=(grid, grid))
    with torch.no_grad():
        attn.rel_pos_h.normal_(std=0.5)
        attn.rel_pos_w.normal_(std=0.5)
    x = torch.randn(1, grid, grid, dim)
    upstream = torch.randn(1, grid, grid, dim)
    results = {}
    for name, forward in (("stock", Attention.forward), *FORWARDS.items()):
        xi = x.clone().requires_grad_()
        out = forward(attn, xi)
        (grad,) = torch.autograd.grad((out * upstream).sum(), [xi])
        results[name] = (out.detach(), grad)
    stock_out, stock_grad = results["stock"]
    return [
        f"agreement {model} {name:<8} global block {grid}x{grid}: output max|Δ| "
        f"{(out - stock_out).abs().max().item():.1e}, input-grad max|Δ| "
        f"{(grad - stock_grad).abs().max().item():.1e} (fp32, tolerance 1e-4)"
        for name, (out, grad) in results.items()
        if name != "stock"
    ]


def flop_bounds(model: str) -> str:
    """The best epoch speed-up the frozen-encoder cases could reach if the decoder step ran at the
    encoder's FLOP/s: (encoder forward + decoder step) / decoder step, counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    from samexp.adapters.decoder import DecoderAdapter
    from samexp.models.seam import Prompts, decode, encode

    def counted(fn, *args) -> tuple[float, object]:
        with FlopCounterMode(display=False) as counter:
            out = fn(*args)
        return counter.get_total_flops(), out

    def decoder_step(sam, emb, boxes) -> None:
        low_res, _ = decode(sam, emb, torch.tensor([0]), Prompts(boxes=boxes))
        low_res.sigmoid().mean().backward()

    bounds, encoder, emb = [], 0.0, None
    for name, adapter in (("decoder", lambda sam: DecoderAdapter()), ("lora", _decoder_lora)):
        base = _model(model)
        adapter(base.sam).apply(base.sam)
        images, sizes, boxes = _batch(base.img_size, 1, torch.device("cpu"))
        if emb is None:  # the same shapes for both adapters: count the encoder once
            with torch.no_grad():
                encoder, emb = counted(encode, base.sam, images, sizes)
        decoder, _ = counted(decoder_step, base.sam, emb, boxes)
        bounds.append(f"frozen-{name} step {decoder / 1e9:.2f} GFLOP, "
                      f"bound {(encoder + decoder) / decoder:.0f}x")  # fmt: skip
    return f"flops {model}: encoder forward {encoder / 1e9:.1f} GFLOP; " + "; ".join(bounds)


def _size(name: str) -> tuple[float, float, float]:
    """Parameters (M), of which the image encoder's (M), and encoder forward GFLOP on the model's
    own input (1024² but for the tiny models), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    from samexp.models.roles import roles
    from samexp.models.seam import encode

    base = _model(name)
    encoder = base.sam.get_submodule(roles(base.sam).image_encoder)
    images, sizes, _ = _batch(base.img_size, 1, torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encode(base.sam, images, sizes)
    millions = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (base.sam, encoder)]
    return millions[0], millions[1], counter.get_total_flops() / 1e9


def side_by_side(
    ours: dict[tuple[str, str], dict], units: dict[str, str], memory: str
) -> list[str]:
    """One column per model (ours), the reference first: each case's time and peak memory, then
    the model's size; beside every other model's figure, reference/model (how many times more
    the reference takes)."""
    models = list(dict.fromkeys(model for _, model in ours))
    if len(models) < 2:
        return []
    ref = REFERENCE if REFERENCE in models else models[0]
    models = [ref, *(m for m in models if m != ref)]
    rows = []
    for case, unit in units.items():
        for what, key, fmt in ((unit, "value", ".4f"), (f"G {memory}", "memory", ".2f")):
            figures = {m: ours[case, m][key] for m in models if (case, m) in ours}
            if ref in figures and len(figures) > 1:
                rows.append((f"{case} {what}", figures, fmt))
    sizes = {m: _size(m) for m in models}
    for i, what in enumerate(("M parameters", "M in encoder", "GFLOP encoder fwd")):
        rows.append((what, {m: sizes[m][i] for m in models}, ".1f"))
    width = max(18, *(len(m) + 2 for m in models))
    lines = [
        f"side by side, ours, {ref}/model in brackets (random weights, same input per model)",
        f"{'':<26}" + "".join(f"{m:>{width}}" for m in models),
    ]
    for what, figures, fmt in rows:
        cells = []
        for m in models:
            if m not in figures:
                cells.append(f"{'-':>{width}}")
                continue
            cell = format(figures[m], fmt)
            if m != ref and figures[m] > 0:
                cell += f" ({figures[ref] / figures[m]:.2f}x)"
            cells.append(f" {cell:>{width - 1}}")
        lines.append(f"{what:<26}" + "".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=[*SAM, *SAM2],
                        default=["tiny", "vit_b", "vit_t", "sam2.1_hiera_t", "sam2.1_hiera_s"])  # fmt: skip
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="ours only; the naive loop is always fp32")  # fmt: skip
    args = parser.parse_args()
    fresh = _fresh_processes()
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {gpu}, "
          f"ours in {args.precision}")  # fmt: skip
    memory = "CUDA" if args.device == "cuda" else "RSS"
    key = "peak_cuda_gb" if args.device == "cuda" else "peak_rss_gb"
    width = max(7, *(len(m) + 1 for m in args.models))
    header = (f"{'case':<15}{'model':<{width}}{'unit':<8}{'naive':>9}{'ours':>9}{'speed-up':>9}"
              f"{'img/s':>8}{'naive ' + memory:>12}{'ours ' + memory:>11}{'ratio':>7}")  # fmt: skip
    print(header)
    print("-" * len(header))
    ours_figures: dict[tuple[str, str], dict] = {}
    for model in args.models:
        for case in args.cases:
            if case not in ONLY.get(model, CASES):
                continue
            unit, repeat, _ = CASES[case]
            out = {}
            for ours in (True, False):  # ours first: a case the model refuses stops there
                try:
                    out[ours] = fresh.submit(
                        run_case, case, model, ours, repeat, args.device, args.precision
                    ).result()
                except Exception as error:  # the child's traceback rides along as its cause
                    sys.exit(f"{case} {model} failed:\n{error.__cause__ or repr(error)}")
                if "n/a" in out[ours]:
                    break
            if "n/a" in out[True]:
                print(f"{case:<15}{model:<{width}}n/a: {out[True]['n/a']}", flush=True)
                continue
            naive, ours_ = out[False], out[True]
            ours_figures[case, model] = {"value": ours_["value"], "memory": ours_[key]}
            print(f"{case:<15}{model:<{width}}{unit:<8}{naive['value']:>9.4f}{ours_['value']:>9.4f}"
                  f"{naive['value'] / ours_['value']:>8.2f}x{ours_['images_per_s']:>8.2f}"
                  f"{naive[key]:>11.2f}G{ours_[key]:>10.2f}G{ours_[key] / naive[key]:>7.2f}",
                  flush=True)  # fmt: skip
    for model in args.models:
        if model in ONLY:  # no ViT attention for the kernels, no cached-encoder cases
            continue
        print("\n".join(agreement(model)), flush=True)
        if {"frozen-decoder", "frozen-lora"} & set(args.cases):
            print(flop_bounds(model), flush=True)
    units = {case: CASES[case][0] for case in args.cases}
    for line in side_by_side(ours_figures, units, memory):
        print(line, flush=True)
    fresh.shutdown()


if __name__ == "__main__":
    main()
