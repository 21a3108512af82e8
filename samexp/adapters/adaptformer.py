"""AdaptFormer (Chen et al., "AdaptFormer: Adapting Vision Transformers for Scalable Visual
Recognition", NeurIPS 2022): a small bottleneck beside each image-encoder block's MLP,
`mlp(x) + s · up(dropout(relu(down(x))))`, on the MLP's own input.

The MLPs are the encoder MLPs the model's family describes (roles, never classes): SAM's MLPBlock,
Hiera's MLP (SAM 2.1), TinyViT's Mlp (MobileSAM). Each maps channels-last tokens to the same width,
so the bottleneck reads what the MLP reads and adds to what it returns; its widths come from the
MLP's first and last Linear. SAM and Hiera normalise before their MLP, as the paper's formula does;
TinyViT's Mlp normalises inside itself, so there the bottleneck reads the un-normalised stream, as
the paper's own code does in every model. `up` starts at zero (the paper's code), so step 0
computes the base model. The paper's settings are the defaults: bottleneck 64, s = 0.1, dropout 0.

The ReLU between `down` and `up` folds into no stock weight: `mergeable = False`. samexp's predict,
evaluate and demo load the adapter file; export to a stock checkpoint is refused in one line.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.registry import register_adapter
from samexp.config.checks import AT_LEAST_1, POSITIVE, Range
from samexp.config.errors import SamexpError
from samexp.models.roles import roles


class AdaptFormerMlp(nn.Module):
    """The original MLP (as `.mlp`, untouched) plus the parallel bottleneck it is wrapped with."""

    def __init__(self, mlp: nn.Module, bottleneck: int, scale: float, dropout: float) -> None:
        super().__init__()
        linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
        self.mlp = mlp
        self.scale = scale
        self.down = nn.Linear(linears[0].in_features, bottleneck)
        self.up = nn.Linear(bottleneck, linears[-1].out_features)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # step 0 computes the base model
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + self.scale * self.up(self.dropout(self.act(self.down(x))))


@register_adapter
class AdaptFormerAdapter(Adapter):
    kind = "adaptformer"
    mergeable = False

    def __init__(
        self,
        bottleneck: Annotated[int, AT_LEAST_1] = 64,  # the paper's width for images
        scale: Annotated[float, POSITIVE] = 0.1,  # s, the paper's 0.1
        dropout: Annotated[float, Range(0, 1, open_high=True)] = 0.0,
    ) -> None:
        self.bottleneck, self.scale, self.dropout = bottleneck, scale, dropout

    def apply(self, model: nn.Module) -> None:
        found = roles(model)
        if not found.mlps:
            encoder = model.get_submodule(found.image_encoder)
            raise SamexpError(
                f"AdaptFormer adds a bottleneck beside each image-encoder MLP, and "
                f"{found.image_encoder} ({type(encoder).__name__}) has none its family describes"
            )
        for name in found.mlps:
            if not any(isinstance(m, nn.Linear) for m in model.get_submodule(name).modules()):
                raise SamexpError(f"AdaptFormer cannot read the widths of MLP {name}: no Linear")
        freeze(model)  # after every target is known: a refused model is left as it was
        for name in found.mlps:
            mlp = model.get_submodule(name)
            model.set_submodule(
                name, AdaptFormerMlp(mlp, self.bottleneck, self.scale, self.dropout)
            )

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        raise SamexpError(
            f"adapter {self.kind} cannot be exported to a stock checkpoint: its bottleneck beside "
            "each image-encoder MLP (a ReLU between two layers) folds into no stock weight. "
            "samexp's predict, evaluate and demo load it from its adapter file "
            "(weights=<run>/weights/adapter.safetensors or run_id=<id>)"
        )

    def label(self) -> str:
        return f"adaptformer-r{self.bottleneck}"
