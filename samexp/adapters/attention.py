"""Attention-only partial fine-tuning (the peft-sam study's "attention" method, arXiv 2502.00418):
the image encoder's attention layers train in place, everything else stays frozen (merge is a
no-op, export writes the stock model as it is).

The attention layers are the image encoder's attention role (samexp.models.roles), whatever the
family names them. `parts=all` (default, the study's choice) trains every parameter of each
attention module: the q/k/v and output projections and what the family keeps beside them (SAM's
relative position tables, TinyViT's attention biases and its pre-attention LayerNorm);
`parts=qkv` only the Linear layers that compute q, k and v. An attention of a class no family
describes is refused, never trained by guess.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from samexp.adapters.linears import refuse_unknown_attention
from samexp.adapters.partial import PartialAdapter, parameter_names
from samexp.adapters.registry import register_adapter
from samexp.models.roles import roles


@register_adapter
class AttentionAdapter(PartialAdapter):
    kind = "attention"

    def __init__(self, parts: Literal["all", "qkv"] = "all") -> None:
        self.parts = parts

    def chosen(self, model: nn.Module) -> list[str]:
        found = roles(model)
        refuse_unknown_attention(f"adapter={self.kind}", found)
        if self.parts == "all":
            modules = [a.name for a in found.attention]
        else:  # a fused projection computes several parts: listed once
            modules = list(found.qkv_linears)
        return [n for m in modules for n in parameter_names(model, m)]

    def label(self) -> str:
        return "attention" if self.parts == "all" else f"attention-{self.parts}"
