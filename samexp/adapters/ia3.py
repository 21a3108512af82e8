"""IA3 (Liu et al. 2022): a trained vector rescales each target's outputs, or, on a feed-forward
layer, its inputs; the fewest parameters of the low-rank family; peft's IA3 layer.

Which targets are feed-forward is read from the roles, not configured: a Linear inside an image-
encoder MLP is scaled at its input (IA3 rescales an FFN's inner activations, the input of its second
layer: `target_modules` naming it adds that), any other at its output (by default each fused qkv).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from samexp.adapters.peft_engine import PeftAdapter
from samexp.adapters.registry import register_adapter

if TYPE_CHECKING:
    from peft import IA3Config

    from samexp.models.roles import Roles


@register_adapter
class Ia3Adapter(PeftAdapter):
    kind = "ia3"

    def __init__(
        self,
        # regex over full module names; unset: each image-encoder attention's qkv Linear, whole
        target_modules: str | None = None,
    ) -> None:
        super().__init__(target_modules)

    def peft_config(self, targets: list[str], found: Roles) -> IA3Config:
        from peft import IA3Config

        feedforward = [t for t in targets if any(t.startswith(f"{m}.") for m in found.mlps)]
        return IA3Config(target_modules=targets, feedforward_modules=feedforward)
