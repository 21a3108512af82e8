"""Norm-only fine-tuning ("LayerNorm" in the peft-sam study, arXiv 2502.00418): the affine weight
and bias of every normalisation layer of the image encoder train, in place (merge is a no-op,
export writes the stock model as it is).

The norms are the image encoder's norm role (samexp.models.roles): torch's LayerNorm in SAM's ViT,
Hiera and TinyViT blocks, each family's LayerNorm2d in the neck, and on MobileSAM also the
BatchNorms of TinyViT's convolution stages, whose affine parameters train while their running
statistics stay the checkpoint's. The scope is the image encoder only, no option: the roles name the
encoder's norms, the study adapts the encoder, and the mask decoder has its own adapter
(`adapter=decoder`).
"""

from __future__ import annotations

from torch import nn

from samexp.adapters.partial import PartialAdapter, parameter_names
from samexp.adapters.registry import register_adapter
from samexp.models.roles import roles


@register_adapter
class LayerNormAdapter(PartialAdapter):
    kind = "layernorm"

    def chosen(self, model: nn.Module) -> list[str]:
        # a norm's own parameters only: a family's norm never holds another layer
        return [n for norm in roles(model).norms for n in parameter_names(model, norm, False)]
