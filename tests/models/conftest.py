"""Helpers shared by the encoder patch tests (attention, checkpointing)."""

from __future__ import annotations

import torch

from samexp.adapters.lora import LoraAdapter, LoraLinear
from samexp.models.build import build_tiny


def randomize_lora_b(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, LoraLinear):
                for b in m.lora_B:
                    b.weight.normal_(std=0.1)


def tiny_lora_sam():
    sam = build_tiny(seed=0).sam
    LoraAdapter(rank=4).apply(sam)
    randomize_lora_b(sam)
    with torch.no_grad():  # SAM zero-inits rel-pos, which would leave the bias untested
        for blk in sam.image_encoder.blocks:
            blk.attn.rel_pos_h.normal_(std=0.5)
            blk.attn.rel_pos_w.normal_(std=0.5)
    return sam


def encoder_images() -> tuple[torch.Tensor, list[tuple[int, int]]]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, 3, 256, 256), generator=g, dtype=torch.uint8)
    return images, [(256, 192)]


class PairedAttention(torch.nn.Module):
    """An attention of a class no model family describes: a fused qkv whose layout is unknowable."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.qkv(x)[..., : x.shape[-1]])


def tiny_with_unknown_attention() -> torch.nn.Module:
    """The tiny SAM whose first encoder block attends with `PairedAttention`."""
    sam = build_tiny(seed=0).sam
    block = sam.image_encoder.blocks[0]
    block.attn = PairedAttention(block.attn.qkv.in_features)
    return sam
