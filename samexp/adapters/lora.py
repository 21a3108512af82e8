"""LoRA in peft's shape, kept to ~100 lines instead of depending on peft (which pulls in transformers
and, on SAM's fused `qkv` Linear, can only adapt q, k and v together; the ring study adapted q and v).

The default targets are every encoder attention's fused qkv: SAM ViT's
`image_encoder.blocks.N.attn.qkv` and MobileSAM TinyViT's `image_encoder.layers.L.blocks.N.attn.qkv`
(stages 1-3; stage 0 is convolutions). The two lay q, k and v out differently (`qkv_rows`).
"""

from __future__ import annotations

import math
import re
from typing import Annotated

import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.image_encoder import Attention as VitAttention
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range
from samexp.config.errors import SamexpError
from samexp.models.mobile import tiny_vit

QKV_PARTS = ("q", "k", "v")


class LoraLinear(nn.Module):
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
        out_slices: list[slice | torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_slices = out_slices or [slice(0, base.out_features)]
        rows = [_rows(part) for part in self.out_slices]
        self.part_sizes = [len(r) for r in rows]
        self.lora_A = nn.ModuleList(nn.Linear(base.in_features, rank, bias=False) for _ in rows)
        self.lora_B = nn.ModuleList(nn.Linear(rank, len(r), bias=False) for r in rows)
        for a, b in zip(self.lora_A, self.lora_B, strict=True):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)
        index = torch.cat(rows)
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
            for i, rows in enumerate(self.out_index.split(self.part_sizes)):
                self.base.weight.index_add_(0, rows, self.delta_weight(i))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            for i, rows in enumerate(self.out_index.split(self.part_sizes)):
                self.base.weight.index_add_(0, rows, self.delta_weight(i), alpha=-1)
            self.merged = False


def _rows(part: slice | torch.Tensor) -> torch.Tensor:
    if isinstance(part, slice):
        return torch.arange(part.start, part.stop)
    return torch.as_tensor(part, dtype=torch.long).flatten()


def qkv_rows(attention: nn.Module) -> dict[str, slice | torch.Tensor] | None:
    """Where q, k and v sit among the outputs of an encoder attention's fused `qkv` Linear; None
    for a module that has no such layout.

    SAM's ViT stacks them, [q | k | v], each `dim` wide (its forward reshapes to (..., 3, heads,
    -1)); TinyViT interleaves them head by head, [q0 k0 v0 | q1 k1 v1 | ...], each head key_dim,
    key_dim and d wide (its forward views (..., heads, -1) and splits [key_dim, key_dim, d]).
    """
    if isinstance(attention, VitAttention):
        d = attention.qkv.in_features
        return {p: slice(i * d, (i + 1) * d) for i, p in enumerate(QKV_PARTS)}
    tv = tiny_vit()
    if tv is not None and isinstance(attention, tv.Attention):
        kd, d = attention.key_dim, attention.d
        heads = torch.arange(attention.num_heads)[:, None] * (2 * kd + d)
        spans = {"q": (0, kd), "k": (kd, kd), "v": (2 * kd, d)}
        return {p: (heads + start + torch.arange(n)).flatten() for p, (start, n) in spans.items()}
    return None


@register_adapter
class LoraAdapter(Adapter):
    kind = "lora"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        alpha: Annotated[float, POSITIVE] = 8.0,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # regex matched against full module names (peft's check_target_module_exists); the default
        # is every encoder attention's fused qkv, in SAM's ViT and in MobileSAM's TinyViT
        target_modules: str = r"image_encoder\.(layers\.\d+\.)?blocks\.\d+\.attn\.qkv",
        # on an encoder attention's fused qkv Linear, which of q/k/v get a LoRA delta (the ring
        # study: q and v)
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
            parent = sam.get_submodule(parent_name)
            parts = self._parts(parent, attr)
            setattr(parent, attr, LoraLinear(linear, self.rank, self.alpha, self.dropout, parts))

    def _parts(self, parent: nn.Module, attr: str) -> list[slice | torch.Tensor] | None:
        """On an encoder attention's fused qkv only the chosen parts get a delta; other layers get
        a full one."""
        layout = qkv_rows(parent) if attr == "qkv" else None
        return None if layout is None else [layout[p] for p in self.qkv_parts]

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
