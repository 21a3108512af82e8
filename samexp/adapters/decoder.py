"""Mask-decoder fine-tuning: the cheap adaptation (the encoder stays frozen, so its output can be cached)."""

from __future__ import annotations

from torch import nn

from samexp.adapters.base import Adapter, freeze, unfreeze
from samexp.adapters.registry import register_adapter
from samexp.models.roles import roles


@register_adapter
class DecoderAdapter(Adapter):
    kind = "decoder"

    def __init__(self, train_prompt_encoder: bool = False) -> None:
        self.train_prompt_encoder = train_prompt_encoder

    def apply(self, model: nn.Module) -> None:
        found = roles(model)  # the parts by role, as each model family names them
        freeze(model)
        unfreeze(model.get_submodule(found.mask_decoder))
        if self.train_prompt_encoder:
            unfreeze(model.get_submodule(found.prompt_encoder))
