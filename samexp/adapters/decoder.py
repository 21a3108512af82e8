"""Mask-decoder fine-tuning: the cheap adaptation (the encoder stays frozen, so its output can be cached)."""

from __future__ import annotations

from segment_anything.modeling import Sam

from samexp.adapters.base import Adapter, freeze, unfreeze
from samexp.adapters.registry import register_adapter


@register_adapter
class DecoderAdapter(Adapter):
    kind = "decoder"

    def __init__(self, train_prompt_encoder: bool = False) -> None:
        self.train_prompt_encoder = train_prompt_encoder

    def apply(self, sam: Sam) -> None:
        freeze(sam)
        unfreeze(sam.mask_decoder)
        if self.train_prompt_encoder:
            unfreeze(sam.prompt_encoder)

    def hparams(self) -> dict:
        return {"train_prompt_encoder": self.train_prompt_encoder}
