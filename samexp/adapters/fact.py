"""FacT-TT (Jie & Deng, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer",
AAAI 2023): the increments of every image-encoder attention weight, stacked across layers, form one
low-rank tensor, ΔW = s · V Σ U with U and V shared by all layers and a small r x r core Σ per
layer and weight; so a whole encoder adapts with two d x r matrices and a few r x r cores.

The weights are those of every encoder attention the model's family describes (roles, never
classes): the q, k and v of its fused projection, each a weight of its own as in the paper (rows of
the fused Linear, wherever the family says they sit), and its output projection (every other
Linear the attention holds). SAM's ViT is one width throughout, so one U and one V serve it, as in
the paper; Hiera (SAM 2.1) widens per stage, and a stage's first attention maps the old width to the
new one, so the factors are shared by width: one U per input width, one V per output width (a
stage's transition reads with the previous stage's U and writes with its own V). Grouping by whole
shape would give each transition a private U and V, more parameters for less sharing.

V starts at zero, so step 0 computes the base model; U and Σ take nn.Linear's default init, as in
the paper's code. The scale s trades against the learning rate under Adam (the update of ΔW grows
with s · lr); the paper tunes it per dataset in {0.01 ... 100}, micro-sam's peft-sam study keeps 1
for that reason, and so does samexp: at s = 1 FacT and LoRA's default (alpha / rank = 1) move at
the same learning rate. Dropout sits between Σ and V, as in the paper's code. The increments fold
into the base weights (`merge`), so export writes the stock model.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.linears import PartsDelta, encoder_attention, unwrapped_state_dict
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range
from samexp.config.errors import SamexpError
from samexp.models.roles import QKV_PARTS, Roles, Rows, roles

FACTORS = "fact"  # the image encoder's child holding the shared U and V


class FactFactors(nn.Module):
    """U (r x width) per input width and V (width x r) per output width, shared by every adapted
    weight of that width; created on first request, in the order attentions are found."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.u = nn.ParameterDict()
        self.v = nn.ParameterDict()

    def u_for(self, width: int) -> None:
        if str(width) not in self.u:
            u = torch.empty(self.rank, width)
            nn.init.kaiming_uniform_(u, a=math.sqrt(5))  # nn.Linear's default, as the paper's U
            self.u[str(width)] = nn.Parameter(u)

    def v_for(self, width: int) -> None:
        if str(width) not in self.v:
            self.v[str(width)] = nn.Parameter(torch.zeros(width, self.rank))  # step 0 = base


class FactLinear(PartsDelta):
    """`base(x) + s · V(dropout(Σ_p(U(x))))` on each part p of `base`'s outputs (q, k, v of a fused
    projection, or all its outputs), with U and V read from the shared `FactFactors`."""

    def __init__(
        self,
        base: nn.Linear,
        factors: FactFactors,
        scale: float,
        dropout: float = 0.0,
        out_slices: list[Rows] | None = None,
    ) -> None:
        super().__init__(base, out_slices)
        # a tuple, so nn.Module does not register the factors here too: they live once, in the
        # image encoder's `fact` child, and every wrapper reads (and trains) the same tensors
        self._factors = (factors,)
        self.scale = scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factors.u_for(base.in_features)
        for size in self.part_sizes:
            factors.v_for(size)
        self.sigma = nn.ParameterList()
        for _ in self.part_sizes:
            core = torch.empty(factors.rank, factors.rank)
            nn.init.kaiming_uniform_(core, a=math.sqrt(5))
            self.sigma.append(nn.Parameter(core))

    @property
    def factors(self) -> FactFactors:
        return self._factors[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        f = self.factors
        h = F.linear(x, f.u[str(self.base.in_features)])  # shared by the parts: computed once
        delta = torch.cat(
            [F.linear(self.dropout(F.linear(h, core)), f.v[str(size)])
             for core, size in zip(self.sigma, self.part_sizes, strict=True)],
            dim=-1,
        )  # fmt: skip
        return self.add(out, delta * self.scale)

    def delta_weight(self, part: int) -> torch.Tensor:
        """ΔW of one part, as `base.weight` rows: s · V Σ U."""
        f = self.factors
        u, v = f.u[str(self.base.in_features)], f.v[str(self.part_sizes[part])]
        return self.scale * (v @ self.sigma[part] @ u)


@register_adapter
class FactAdapter(Adapter):
    kind = "fact"

    def __init__(
        self,
        rank: Annotated[int, AT_LEAST_1] = 8,
        # s in ΔW = s · V Σ U (1: LoRA's default pace at the same learning rate; see the docstring)
        scale: Annotated[float, POSITIVE] = 1.0,
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
        # of each attention's q, k and v, which get an increment (the paper: all three)
        qkv_parts: tuple[str, ...] | list[str] = QKV_PARTS,
        # the attention's output projection gets one too (the paper: yes)
        proj: bool = True,
    ) -> None:
        bad = [p for p in qkv_parts if p not in QKV_PARTS]
        if bad or not qkv_parts:
            raise SamexpError(
                f"adapter.qkv_parts must be a non-empty subset of {QKV_PARTS}, got {list(qkv_parts)}"
            )
        self.rank, self.scale, self.dropout, self.proj = rank, scale, dropout, proj
        self.qkv_parts = [p for p in QKV_PARTS if p in qkv_parts]

    def apply(self, model: nn.Module) -> None:
        found = roles(model)
        targets = self._targets(model, found)
        encoder = model.get_submodule(found.image_encoder)
        if hasattr(encoder, FACTORS):
            raise SamexpError(
                f"FacT cannot adapt {found.image_encoder}: it already has a `{FACTORS}` child "
                "(was FacT applied twice?)"
            )
        freeze(model)  # after every target is known: a refused model is left as it was
        factors = FactFactors(self.rank)
        setattr(encoder, FACTORS, factors)
        for name, rows in targets.items():
            wrapped = FactLinear(model.get_submodule(name), factors, self.scale, self.dropout, rows)
            model.set_submodule(name, wrapped)

    def _targets(self, model: nn.Module, found: Roles) -> dict[str, list[Rows] | None]:
        """Linear name -> the output rows of each part adapted there (None: all its outputs)."""
        encoder_attention(model, found, "FacT")
        targets: dict[str, list[Rows] | None] = {}
        for attention in found.attention:
            qkv = {}
            for part, (linear, rows) in attention.parts.items():
                if part in self.qkv_parts:
                    width = model.get_submodule(linear).out_features
                    qkv.setdefault(linear, []).append(rows if rows is not None else slice(0, width))
            targets.update(qkv)
            if self.proj:
                holders = {linear for linear, _ in attention.parts.values()}
                module = model.get_submodule(attention.name)
                for child, m in module.named_children():
                    name = f"{attention.name}.{child}"
                    if isinstance(m, nn.Linear) and name not in holders:
                        targets[name] = None
        return targets

    def merge(self, sam: nn.Module) -> None:
        for m in sam.modules():
            if isinstance(m, FactLinear):
                m.merge()

    def unmerge(self, sam: nn.Module) -> None:
        for m in sam.modules():
            if isinstance(m, FactLinear):
                m.unmerge()

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        """The increments folded into the base weights under their stock names; the factors and
        cores dropped: the stock builder loads it and runs at the base model's speed."""
        wrapped = {n: m for n, m in sam.named_modules() if isinstance(m, FactLinear)}
        was_merged = {n: m.merged for n, m in wrapped.items()}
        factors = [n for n, m in sam.named_modules() if isinstance(m, FactFactors)]
        self.merge(sam)
        state = {
            k: v
            for k, v in unwrapped_state_dict(sam, list(wrapped), "base").items()
            if not k.startswith(tuple(f"{n}." for n in factors))
        }
        for name, m in wrapped.items():
            if not was_merged[name]:
                m.unmerge()
        return state

    def label(self) -> str:
        return f"fact-r{self.rank}"
