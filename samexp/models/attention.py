"""Faster attention kernels for SAM's image encoder, bound onto the stock modules at run time.

SAM's `Attention.forward` materialises the (B·heads)×HW×HW scores and walks them several times
(scores, two bias adds, softmax) and keeps them for backward. Two exact alternatives:
`sdpa` hands the decomposed relative-position bias to `scaled_dot_product_attention` as a float
mask (fused kernels on CUDA); `blocked` (samexp.models.blocked_attention) keeps the scores in
cache-sized blocks, the fastest on CPU. The modules keep their parameters and names, so adapters,
checkpoints and switching back to "stock" are unaffected. An encoder without that attention
(MobileSAM's TinyViT) runs its own: `choose_kernel` says so.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

from samexp.config.errors import SamexpError
from samexp.models.blocked_attention import blocked_attention


def decomposed_rel_pos(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's relative-position bias in factored form: (N, q_h·q_w, k_h) and (N, q_h·q_w, k_w) terms
    whose broadcast sum is what `add_decomposed_rel_pos` adds to the scores.

    q is (N, q_h·q_w, C) unscaled, as in segment_anything; the lookup is its own `get_rel_pos`.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    r_q = q.reshape(q.shape[0], q_h, q_w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(q_h, k_h, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(q_w, k_w, rel_pos_w))
    return rel_h.reshape(q.shape[0], q_h * q_w, k_h), rel_w.reshape(q.shape[0], q_h * q_w, k_w)


def _heads(self: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v as (B·heads)×HW×C. `self.qkv` is only called, so a LoRA-wrapped projection works."""
    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    return qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)


def _merge_heads(self: Attention, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    B, H, W, _ = x.shape
    out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def sdpa_attention_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """What `Attention.forward` computes, through `F.scaled_dot_product_attention` (the bias as a
    float mask: fused kernels where the device has them for it, e.g. CUDA; math path on CPU)."""
    B, H, W, _ = x.shape
    q, k, v = _heads(self, x)
    bias = None
    if self.use_rel_pos:
        rel_h, rel_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        bias = (rel_h[:, :, :, None] + rel_w[:, :, None, :]).view(B, self.num_heads, H * W, H * W)
    split = (B, self.num_heads, H * W, -1)
    out = F.scaled_dot_product_attention(
        q.view(split), k.view(split), v.view(split), attn_mask=bias, scale=self.scale
    )
    return _merge_heads(self, out.reshape(B * self.num_heads, H * W, -1), x)


def blocked_attention_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """What `Attention.forward` computes, with the scores built and used block by block."""
    B, H, W, _ = x.shape
    q, k, v = _heads(self, x)
    rel_h = rel_w = None
    if self.use_rel_pos:
        rel_h, rel_w = decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
    return _merge_heads(self, blocked_attention(q, k, v, rel_h, rel_w, self.scale), x)


FORWARDS = {"sdpa": sdpa_attention_forward, "blocked": blocked_attention_forward}
KERNELS = ("stock", *FORWARDS)


def _attention_modules(sam: nn.Module) -> list[Attention]:
    return [m for m in sam.image_encoder.modules() if isinstance(m, Attention)]


def resolve_kernel(kernel: str, device: torch.device) -> str:
    """`auto` is the fastest exact kernel measured for the device: blocked on CPU (training and
    inference), SDPA on CUDA, whose fused kernels take the bias directly; SDPA on Apple's GPU
    too, by analogy (not measured there)."""
    if kernel != "auto":
        return kernel
    return "sdpa" if device.type in ("cuda", "mps") else "blocked"


def choose_kernel(sam: nn.Module, kernel: str, device: torch.device, key: str) -> str:
    """The kernel to bind for `kernel` as configured under `key`: `auto` resolved for the device.

    The kernels replace segment_anything's ViT attention; an image encoder without it (MobileSAM's
    TinyViT, whose windows of 49 or 196 tokens leave them nothing to save) keeps its own: `auto`
    means "stock" there, and naming another kernel is refused rather than silently ignored.
    """
    if _attention_modules(sam):
        return resolve_kernel(kernel, device)
    if kernel in ("auto", "stock"):
        return "stock"
    encoder = type(sam.image_encoder).__name__
    raise SamexpError(
        f"{key}={kernel}: the {kernel} kernel replaces segment_anything's ViT attention, which this "
        f"model's image encoder ({encoder}) does not have; use {key}=auto or {key}=stock"
    )


def kernel_of(module: Attention) -> str:
    """Which forward an encoder `Attention` runs now: "stock", "sdpa" or "blocked"."""
    bound = getattr(module.forward, "__func__", None)
    return next((name for name, f in FORWARDS.items() if f is bound), "stock")


def set_attention(sam: nn.Module, kernel: str) -> int:
    """Bind `kernel`'s forward onto every image-encoder `Attention` ("stock" gives the class's own
    back); returns how many modules there are. An instance attribute shadows the class method, so
    segment_anything stays untouched, parameter names do not change, and repeating it is a no-op.
    """
    if kernel not in KERNELS:
        raise ValueError(f"attention kernel {kernel!r}: choose one of {KERNELS}")
    modules = _attention_modules(sam)
    for m in modules:
        if "forward" in vars(m):
            del m.forward
        if kernel != "stock":
            m.forward = types.MethodType(FORWARDS[kernel], m)
    return len(modules)


def restore_attention(sam: nn.Module) -> int:
    """Give every image-encoder `Attention` its stock forward back; returns how many were patched."""
    patched = sum(kernel_of(m) != "stock" for m in _attention_modules(sam))
    set_attention(sam, "stock")
    return patched
