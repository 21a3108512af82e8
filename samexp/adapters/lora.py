"""LoRA in peft's shape, kept to ~100 lines instead of depending on peft (which pulls in transformers
and, on SAM's fused `qkv` Linear, can only adapt q, k and v together; the ring study adapted q and v).

Targets are roles, never classes (samexp.models.roles): by default every image-encoder attention's
q, k and v projections, of which `qkv_parts` get a delta, wherever the model's family says they sit
(SAM's ViT stacks them in one fused Linear, MobileSAM's TinyViT interleaves them head by head).
What cannot be adapted as configured (an attention of a class no family describes) is refused.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.linears import (
    TARGETS_HINT,
    PartsDelta,
    checked_regex,
    encoder_attention,
    linears_matching,
    unwrapped_state_dict,
)
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range
from samexp.config.errors import SamexpError
from samexp.models.roles import QKV_PARTS, Roles, Rows, roles


class LoraLinear(PartsDelta):
    """`base(x) + B(A(dropout(x))) * alpha/rank`, added only to the chosen output parts of `base`.

    Each part, with its own A and B, is a slice of the outputs or the output rows it is made of
    (a part interleaved with others, as TinyViT's q is, head by head). B starts at zero, so a
    freshly wrapped layer computes exactly what `base` did.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        out_slices: list[Rows] | None = None,
    ) -> None:
        self.out_slices = out_slices or [slice(0, base.out_features)]
        super().__init__(base, self.out_slices)
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.ModuleList(
            nn.Linear(base.in_features, rank, bias=False) for _ in self.part_sizes
        )
        self.lora_B = nn.ModuleList(nn.Linear(rank, n, bias=False) for n in self.part_sizes)
        for a, b in zip(self.lora_A, self.lora_B, strict=True):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        h = self.dropout(x)
        delta = torch.cat([b(a(h)) for a, b in zip(self.lora_A, self.lora_B, strict=True)], dim=-1)
        return self.add(out, delta * self.scaling)

    def delta_weight(self, part: int) -> torch.Tensor:
        return (self.lora_B[part].weight @ self.lora_A[part].weight) * self.scaling


@register_adapter
class LoraAdapter(Adapter):
    kind = "lora"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # regex matched against full module names (peft's check_target_module_exists); unset: the
        # role "image-encoder attention projections", whatever the model family names them
        target_modules: str | None = None,
        # of an image-encoder attention's q, k and v, which get a LoRA delta (the ring study: q and
        # v), wherever its family says they sit (one fused qkv Linear in SAM and MobileSAM)
        qkv_parts: tuple[str, ...] | list[str] = ("q", "v"),
    ) -> None:
        bad = [p for p in qkv_parts if p not in QKV_PARTS]
        if bad or not qkv_parts:
            raise SamexpError(
                f"adapter.qkv_parts must be a non-empty subset of {QKV_PARTS}, got {list(qkv_parts)}"
            )
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.target_modules = checked_regex(target_modules)
        self.qkv_parts = [p for p in QKV_PARTS if p in qkv_parts]

    def apply(self, model: nn.Module) -> None:
        found = roles(model)
        targets = {name: self._rows(name, found) for name in self._targets(model, found)}
        freeze(model)  # after every target is known: a refused model is left as it was
        for name, rows in targets.items():
            linear = LoraLinear(
                model.get_submodule(name), self.rank, self.alpha, self.dropout, rows
            )
            model.set_submodule(name, linear)

    def _targets(self, model: nn.Module, found: Roles) -> list[str]:
        """The Linear layers to wrap: the attention projections holding `qkv_parts`, or the regex's."""
        if self.target_modules is not None:
            return linears_matching(model, self.target_modules)
        if found.unknown_attention:
            more = len(found.unknown_attention) - 1
            self._refuse(found.unknown_attention[0] + (f" and {more} more" if more else ""))
        encoder_attention(model, found, "LoRA", hint=TARGETS_HINT)
        linears = [
            lin for a in found.attention for p, (lin, _) in a.parts.items() if p in self.qkv_parts
        ]
        return list(dict.fromkeys(linears))  # a fused projection holds several parts: wrapped once

    def _rows(self, name: str, found: Roles) -> list[Rows] | None:
        """The output rows of Linear `name` that get a delta: on an attention projection, those of
        the chosen parts; on any other layer, all of them (None)."""
        unknown = found.unknown_attention_holding(name)
        if unknown is not None:
            self._refuse(unknown)
        parts = found.parts_on(name)
        if parts is None:
            return None
        rows = [parts[p] for p in self.qkv_parts if p in parts]
        if not rows:
            raise SamexpError(
                f"LoRA cannot adapt {name}: it computes {'/'.join(parts)} of its attention, none of "
                f"adapter.qkv_parts={self.qkv_parts}; add the part to qkv_parts or leave it out of "
                "adapter.target_modules"
            )
        return None if any(r is None for r in rows) else rows

    def _refuse(self, attention: str) -> None:
        raise SamexpError(
            f"LoRA cannot adapt {attention}: no model family describes how this attention's "
            f"projections split into q, k and v, so adapter.qkv_parts={self.qkv_parts} cannot be "
            "honoured; describe its class in its family module (samexp.models.roles."
            "register_family), or name other layers with adapter.target_modules=<regex>"
        )

    def merge(self, sam: nn.Module) -> None:
        for m in sam.modules():
            if isinstance(m, LoraLinear):
                m.merge()

    def unmerge(self, sam: nn.Module) -> None:
        for m in sam.modules():
            if isinstance(m, LoraLinear):
                m.unmerge()

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        """LoRA folded into the base weights under their original names, LoRA tensors dropped: the
        stock builder loads it and runs at the base model's speed."""
        wrapped = [name for name, m in sam.named_modules() if isinstance(m, LoraLinear)]
        was_merged = {name: sam.get_submodule(name).merged for name in wrapped}
        self.merge(sam)
        state = unwrapped_state_dict(sam, wrapped, "base")
        for name in wrapped:
            if not was_merged[name]:
                sam.get_submodule(name).unmerge()
        return state

    def label(self) -> str:
        return f"lora-r{self.rank}"
