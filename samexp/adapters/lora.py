"""LoRA in peft's shape, kept to ~100 lines instead of depending on peft (which pulls in transformers
and, on SAM's fused `qkv` Linear, can only adapt q, k and v together; the ring study adapted q and v).
"""

from __future__ import annotations

import math
import re
from typing import Annotated

import torch
from segment_anything.modeling import Sam
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.registry import register_adapter
from samexp.checks import AT_LEAST_1, POSITIVE, Range
from samexp.errors import SamexpError

QKV_PARTS = ("q", "k", "v")


class LoraLinear(nn.Module):
    """`base(x) + B(A(dropout(x))) * alpha/rank`, added only to the chosen output slices of `base`.

    B starts at zero, so a freshly wrapped layer computes exactly what `base` did.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        out_slices: list[slice] | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_slices = out_slices or [slice(0, base.out_features)]
        self.lora_A = nn.ModuleList(
            nn.Linear(base.in_features, rank, bias=False) for _ in self.out_slices
        )
        self.lora_B = nn.ModuleList(
            nn.Linear(rank, s.stop - s.start, bias=False) for s in self.out_slices
        )
        for a, b in zip(self.lora_A, self.lora_B, strict=True):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)
        index = torch.cat([torch.arange(s.start, s.stop) for s in self.out_slices])
        self.register_buffer("out_index", index, persistent=False)
        self.covers_all = torch.equal(index, torch.arange(base.out_features))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        h = self.dropout(x)
        delta = torch.cat([b(a(h)) for a, b in zip(self.lora_A, self.lora_B, strict=True)], dim=-1)
        if self.covers_all:  # a plain add: no scatter forward, no gather backward
            return out + delta * self.scaling
        return out.index_add(-1, self.out_index, delta * self.scaling)

    def delta_weight(self, s: int) -> torch.Tensor:
        return (self.lora_B[s].weight @ self.lora_A[s].weight) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            for i, s in enumerate(self.out_slices):
                self.base.weight[s] += self.delta_weight(i)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            for i, s in enumerate(self.out_slices):
                self.base.weight[s] -= self.delta_weight(i)
            self.merged = False


@register_adapter
class LoraAdapter(Adapter):
    kind = "lora"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # regex matched against full module names (peft's check_target_module_exists)
        target_modules: str = r"image_encoder\.blocks\.\d+\.attn\.qkv",
        # on SAM's fused qkv Linear, which of q/k/v get a LoRA delta (the ring study: q and v)
        qkv_parts: tuple[str, ...] | list[str] = ("q", "v"),
    ) -> None:
        bad = [p for p in qkv_parts if p not in QKV_PARTS]
        if bad or not qkv_parts:
            raise SamexpError(
                f"adapter.qkv_parts must be a non-empty subset of {QKV_PARTS}, got {list(qkv_parts)}"
            )
        try:
            re.compile(target_modules)
        except re.error as e:
            raise SamexpError(
                f"adapter.target_modules={target_modules!r} is not a regular expression ({e})"
            ) from None
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.target_modules = target_modules
        self.qkv_parts = [p for p in QKV_PARTS if p in qkv_parts]

    def apply(self, sam: Sam) -> None:
        freeze(sam)
        targets = [
            (name, m)
            for name, m in sam.named_modules()
            if isinstance(m, nn.Linear) and re.fullmatch(self.target_modules, name)
        ]
        if not targets:
            linears = [n for n, m in sam.named_modules() if isinstance(m, nn.Linear)]
            raise SamexpError(
                f"adapter.target_modules={self.target_modules!r} matches no Linear layer. "
                f"Examples of names: {linears[:3] + linears[-2:]}"
            )
        for name, linear in targets:
            parent_name, _, attr = name.rpartition(".")
            wrapped = LoraLinear(
                linear, self.rank, self.alpha, self.dropout, self._slices(name, linear)
            )
            setattr(sam.get_submodule(parent_name), attr, wrapped)

    def _slices(self, name: str, linear: nn.Linear) -> list[slice] | None:
        """On a fused qkv projection only the chosen parts get a delta; other layers get a full one."""
        if not name.endswith("qkv") or linear.out_features != 3 * linear.in_features:
            return None
        d = linear.in_features
        return [slice(i * d, (i + 1) * d) for i, p in enumerate(QKV_PARTS) if p in self.qkv_parts]

    def merge(self, sam: Sam) -> None:
        for m in sam.modules():
            if isinstance(m, LoraLinear):
                m.merge()

    def unmerge(self, sam: Sam) -> None:
        for m in sam.modules():
            if isinstance(m, LoraLinear):
                m.unmerge()

    def plain_state_dict(self, sam: Sam) -> dict[str, torch.Tensor]:
        """LoRA folded into the base weights under their original names, LoRA tensors dropped: the
        stock builder loads it and runs at the base model's speed."""
        wrapped = [name for name, m in sam.named_modules() if isinstance(m, LoraLinear)]
        was_merged = {name: sam.get_submodule(name).merged for name in wrapped}
        self.merge(sam)
        state = {}
        for key, value in sam.state_dict().items():
            owner = next((n for n in wrapped if key.startswith(f"{n}.")), None)
            if owner is None:
                state[key] = value.detach().clone()
            elif key.startswith(f"{owner}.base."):
                state[owner + key[len(owner) + len(".base") :]] = value.detach().clone()
        for name in wrapped:
            if not was_merged[name]:
                sam.get_submodule(name).unmerge()
        return state

    def hparams(self) -> dict:
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "target_modules": self.target_modules,
            "qkv_parts": list(self.qkv_parts),
        }

    def label(self) -> str:
        return f"lora-r{self.rank}"
