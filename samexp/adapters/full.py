"""Full fine-tuning: every parameter of SAM trains (the upper bound other adapters are compared with)."""

from __future__ import annotations

from segment_anything.modeling import Sam

from samexp.adapters.base import Adapter, unfreeze
from samexp.adapters.registry import register_adapter


@register_adapter
class FullAdapter(Adapter):
    kind = "full"

    def apply(self, sam: Sam) -> None:
        unfreeze(sam)
