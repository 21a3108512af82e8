"""SSF (Lian et al. 2022, "Scaling & Shifting Your Features"): after each chosen Linear layer of the
image encoder, a learned per-output-channel scale γ and shift β, `y = γ ⊙ (W x + b) + β`.

It is linear in the layer's output, so it folds into the layer: `W' = diag(γ) W`, `b' = γ ⊙ b + β`;
merged, the model runs at the base model's speed, and `plain_state_dict` writes the folded tensors
under the original names (the stock builder loads them). γ starts at 1 and β at 0 (the paper draws
them around those values), so a freshly applied adapter computes exactly what the base model did.

Targets are roles, never classes (samexp.models.roles): every Linear inside the image encoder's
attention layers (q/k/v and output projections) and MLPs, the Linear layers of its transformer
blocks; `targets` picks one of the two. Hiera's stage-change projection (a Linear beside, not
inside, a block's attention and MLP) is not among them. The paper also scales after each norm;
here the norms have their own adapter (`adapter=layernorm`).
"""

from __future__ import annotations

import torch
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.linears import refuse_unknown_attention
from samexp.adapters.registry import register_adapter
from samexp.config.errors import SamexpError
from samexp.models.roles import roles

TARGETS = ("attention", "mlp")


class SsfLinear(nn.Module):
    """`scale * base(x) + shift`, per output channel. A Linear without a bias gets a scale only:
    a shift could not fold into its tensors, and export writes the stock model's tensors."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        like = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.scale = nn.Parameter(torch.ones(base.out_features, **like))
        self.shift = (
            nn.Parameter(torch.zeros(base.out_features, **like)) if base.bias is not None else None
        )
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        # in the layer's own output dtype (bf16 under autocast), so what follows sees what the
        # stock layer gives it
        out = out * self.scale.to(out.dtype)
        return out if self.shift is None else out + self.shift.to(out.dtype)

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The base layer's weight and bias with the scale and shift folded in (new tensors)."""
        weight, bias = self.base.weight, self.base.bias
        if self.merged:
            return weight.clone(), None if bias is None else bias.clone()
        weight = weight * self.scale[:, None]
        return weight, None if bias is None else bias * self.scale + self.shift

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            weight, bias = self.folded()
            self.base.weight.copy_(weight)
            if bias is not None:
                self.base.bias.copy_(bias)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:  # exact up to rounding while no scale is 0 (the division undoes merge)
            self.base.weight.div_(self.scale[:, None])
            if self.base.bias is not None:
                self.base.bias.sub_(self.shift).div_(self.scale)
            self.merged = False


@register_adapter
class SsfAdapter(Adapter):
    kind = "ssf"

    def __init__(
        self,
        # which Linear layers of the image encoder get a scale and shift: those inside its
        # attention layers, inside its MLPs, or both (default)
        targets: tuple[str, ...] | list[str] = TARGETS,
    ) -> None:
        bad = [t for t in targets if t not in TARGETS]
        if bad or not targets:
            raise SamexpError(
                f"adapter.targets must be a non-empty subset of {TARGETS}, got {list(targets)}"
            )
        self.targets = [t for t in TARGETS if t in targets]

    def apply(self, model: nn.Module) -> None:
        targets = self._targets(model)
        freeze(model)  # after every target is known: a refused model is left as it was
        for name in targets:
            model.set_submodule(name, SsfLinear(model.get_submodule(name)))

    def _targets(self, model: nn.Module) -> list[str]:
        found = roles(model)
        modules = []
        if "attention" in self.targets:
            refuse_unknown_attention(f"adapter={self.kind}", found)
            modules += [a.name for a in found.attention]
        if "mlp" in self.targets:
            modules += list(found.mlps)
        names = [
            f"{m}.{n}"
            for m in modules
            for n, layer in model.get_submodule(m).named_modules()
            if isinstance(layer, nn.Linear)
        ]
        if not names:
            raise SamexpError(
                f"adapter=ssf finds no Linear layer in the image encoder's {' or '.join(self.targets)} "
                f"layers of {type(model).__name__}: choose other adapter.targets or another adapter"
            )
        return names

    def _wrapped(self, model: nn.Module) -> dict[str, SsfLinear]:
        return {n: m for n, m in model.named_modules() if isinstance(m, SsfLinear)}

    def merge(self, sam: nn.Module) -> None:
        for m in self._wrapped(sam).values():
            m.merge()

    def unmerge(self, sam: nn.Module) -> None:
        for m in self._wrapped(sam).values():
            m.unmerge()

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        """Scale and shift folded into each wrapped layer's weight and bias under the layer's own
        name, the SSF tensors dropped; the model itself is left as it was (merged or not)."""
        wrapped = self._wrapped(sam)
        state = {
            key: value.detach().clone()
            for key, value in sam.state_dict().items()
            if not any(key.startswith(f"{name}.") for name in wrapped)
        }
        for name, layer in wrapped.items():
            weight, bias = layer.folded()
            state[f"{name}.weight"] = weight
            if bias is not None:
                state[f"{name}.bias"] = bias
        return state

    def label(self) -> str:
        return "ssf" if self.targets == list(TARGETS) else f"ssf-{'+'.join(self.targets)}"
