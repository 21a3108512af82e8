"""Activation checkpointing for the blocks of a model's image encoder, bound onto the stock modules:
the blocks its family names (`Roles.blocks`: SAM's ViT blocks, MobileSAM's TinyViT MBConv and
attention blocks, SAM 2's Hiera blocks).

When the encoder trains (LoRA on it, full fine-tune), every block's activations are kept for
backward; checkpointing keeps only each block's input and recomputes the rest during backward.
The forward is rebound on the block itself rather than wrapped in a new module, so parameter names
(and thus saved adapters and checkpoints) do not change.
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from samexp.models.roles import roles


def checkpointed_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's own forward under `checkpoint` when a backward pass could need its activations."""
    plain = type(self).forward  # calls self.attn(...), so a patched attention forward still applies
    needs_grad = x.requires_grad or any(p.requires_grad for p in self.parameters())
    if torch.is_grad_enabled() and needs_grad:
        return checkpoint(plain, self, x, use_reentrant=False)
    return plain(self, x)


def is_checkpointed(block: nn.Module) -> bool:
    return getattr(block.forward, "__func__", None) is checkpointed_block_forward


def encoder_blocks(sam: nn.Module) -> list[nn.Module]:
    """The image encoder's blocks, in order, as its family names them."""
    return [sam.get_submodule(name) for name in roles(sam).blocks]


def enable_checkpointing(sam: nn.Module) -> int:
    """Checkpoint every block of the image encoder; returns how many; calling twice is a no-op."""
    blocks = encoder_blocks(sam)
    for block in blocks:
        if not is_checkpointed(block):
            block.forward = types.MethodType(checkpointed_block_forward, block)
    return len(blocks)


def disable_checkpointing(sam: nn.Module) -> int:
    """Give every block its plain forward back; returns how many were checkpointed."""
    disabled = 0
    for block in encoder_blocks(sam):
        if is_checkpointed(block):
            del block.forward
            disabled += 1
    return disabled
