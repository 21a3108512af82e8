"""Full fine-tuning: every parameter of SAM trains (the upper bound other adapters are compared with)."""

from __future__ import annotations

from torch import nn

from samexp.adapters.base import Adapter, unfreeze
from samexp.adapters.registry import register_adapter


@register_adapter
class FullAdapter(Adapter):
    kind = "full"

    def apply(self, model: nn.Module) -> None:
        unfreeze(model)
