"""BitFit (Ben Zaken et al. 2022): only bias terms train, in place, so the trained model is the
stock model with other biases (merge is a no-op, export writes it as it is).

A bias is a parameter whose own name is `bias` (Linear, convolution and norm layers), found under
the parts' roles, never by class. The default scope is the image encoder, as in the peft-sam study
(arXiv 2502.00418, which applies it to the encoder's blocks): that keeps BitFit comparable with the
other encoder methods (LoRA, SSF, attention-only), each of which leaves the prompt encoder and mask
decoder stock; `scope=all` adds their biases too (the parts a segmentation forward runs, by role:
SAM 2's memory modules are not among them, since single images never reach them).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from samexp.adapters.partial import PartialAdapter, parameter_names
from samexp.adapters.registry import register_adapter
from samexp.models.roles import roles


@register_adapter
class BitFitAdapter(PartialAdapter):
    kind = "bitfit"

    def __init__(self, scope: Literal["image_encoder", "all"] = "image_encoder") -> None:
        self.scope = scope

    def chosen(self, model: nn.Module) -> list[str]:
        found = roles(model)
        parts = [found.image_encoder]
        if self.scope == "all":
            parts += [found.prompt_encoder, found.mask_decoder]
        names = [n for part in parts for n in parameter_names(model, part)]
        return [n for n in names if n.rpartition(".")[2] == "bias"]

    def label(self) -> str:
        return "bitfit" if self.scope == "image_encoder" else f"bitfit-{self.scope}"
