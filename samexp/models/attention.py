"""Fused attention for SAM's image encoder: `scaled_dot_product_attention` bound onto the stock modules.

SAM's `Attention.forward` materialises the (B·heads)×HW×HW score matrix three times (scores, +bias,
softmax) and keeps them for backward; SDPA lets PyTorch pick a fused kernel with the decomposed
relative-position bias passed as a float mask. The modules keep their parameters and names, so
adapters, checkpoints and `restore_attention` are unaffected.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn


def rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """The term `add_decomposed_rel_pos` adds to the scores, as a (N, q_h·q_w, k_h·k_w) bias.

    q is (N, q_h·q_w, C) unscaled, as in segment_anything; the rel-pos lookup is its own `get_rel_pos`.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    r_q = q.reshape(q.shape[0], q_h, q_w, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(q_h, k_h, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(q_w, k_w, rel_pos_w))
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(q.shape[0], q_h * q_w, k_h * k_w)


def sdpa_attention_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """What `Attention.forward` computes, through `F.scaled_dot_product_attention`.

    `self.qkv` is only called, so a LoRA-wrapped projection works unchanged.
    """
    B, H, W, _ = x.shape
    heads = self.num_heads
    qkv = self.qkv(x).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each B×heads×HW×C
    bias = None
    if self.use_rel_pos:
        flat_q = q.reshape(B * heads, H * W, -1)
        bias = rel_pos_bias(flat_q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        bias = bias.view(B, heads, H * W, H * W).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
    out = out.view(B, heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def _attention_modules(sam: nn.Module) -> list[Attention]:
    return [m for m in sam.image_encoder.modules() if isinstance(m, Attention)]


def uses_sdpa(module: nn.Module) -> bool:
    return getattr(module.forward, "__func__", None) is sdpa_attention_forward


def use_sdpa(sam: nn.Module) -> int:
    """Bind the SDPA forward onto every image-encoder `Attention`; returns how many now use it.

    An instance attribute shadows the class method, so segment_anything itself stays untouched and
    calling this twice changes nothing.
    """
    modules = _attention_modules(sam)
    for m in modules:
        if not uses_sdpa(m):
            m.forward = types.MethodType(sdpa_attention_forward, m)
    return len(modules)


def restore_attention(sam: nn.Module) -> int:
    """Give every image-encoder `Attention` its stock forward back; returns how many were patched."""
    restored = 0
    for m in _attention_modules(sam):
        if uses_sdpa(m):
            del m.forward  # the class's Attention.forward shows through again
            restored += 1
    return restored
