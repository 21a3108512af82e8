"""Adapters whose layers are the `peft` library's (DoRA, LoHa, LoKr, IA3, VeRA): samexp chooses the
Linear layers by role and keeps saving, reloading and export; peft builds, runs and merges the layers,
so each method is a few lines naming its peft config (one module per method beside this one).

peft wraps a whole Linear: on a fused qkv projection (SAM's ViT, MobileSAM, SAM 2.1's Hiera) it
adapts q, k and v together. samexp's LoRA (`lora.py`) stays hand-written because it adapts slices of
a fused qkv (q and v, as the ring study did), which no peft layer can.
`import peft` takes ~5 s (it imports transformers), so it happens only when such an adapter is
applied, never when the adapter registry is read.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.adapters.linears import (
    TARGETS_HINT,
    checked_regex,
    encoder_attention,
    linears_matching,
)
from samexp.models.roles import Roles, roles

if TYPE_CHECKING:
    from peft import PeftConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

# peft's name for the one adapter a layer holds: part of every saved tensor's name
# (`...qkv.lora_A.default.weight`), so a constant, never derived from a hyperparameter
ADAPTER_NAME = "default"


class PeftAdapter(Adapter):
    """One peft method on chosen Linear layers, everything else frozen.

    Targets: the `target_modules` regex's Linear layers (full names, as LoRA's), or by default the
    image encoder's attention projections by role (`samexp.models.roles`): each attention's fused
    qkv Linear, whole. A subclass sets `kind`, keeps its constructor arguments as attributes (they
    are its saved hyperparameters) and builds its method's config in `peft_config`.
    """

    def __init__(self, target_modules: str | None = None) -> None:
        self.target_modules = checked_regex(target_modules)

    @abstractmethod
    def peft_config(self, targets: list[str], found: Roles) -> PeftConfig:
        """The method's peft config adapting exactly the Linear layers named in `targets`."""

    def apply(self, model: nn.Module) -> None:
        found = roles(model)
        targets = self._targets(model, found)
        config = self.peft_config(targets, found)
        freeze(model)  # after the targets are known: a refused model is left as it was
        self.inject(config, model)
        # peft copies its config onto the model; samexp keeps the spec itself, and a stock SAM
        # carries no such attribute
        model.__dict__.pop("peft_config", None)

    def inject(self, config: PeftConfig, model: nn.Module) -> None:
        """Wrap the targets in place; peft leaves only the adapter's own parameters trainable."""
        from peft import inject_adapter_in_model

        inject_adapter_in_model(config, model, ADAPTER_NAME)

    def _targets(self, model: nn.Module, found: Roles) -> list[str]:
        if self.target_modules is not None:
            return linears_matching(model, self.target_modules)
        encoder_attention(model, found, self.kind, hint=TARGETS_HINT)
        return list(found.qkv_linears)

    def merge(self, sam: nn.Module) -> None:
        for layer in _peft_layers(sam).values():
            if not layer.merged:  # peft warns on a second merge; samexp's merge is idempotent
                layer.merge()

    def unmerge(self, sam: nn.Module) -> None:
        for layer in _peft_layers(sam).values():
            if layer.merged:
                layer.unmerge()

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        """The deltas folded into the base weights, read with each peft layer swapped for its base
        Linear: exactly the stock model's names and tensors, none of the adapter's. The model is
        left as it was: an unmerged layer gets its base weights back exactly (peft's unmerge
        subtracts or divides, which rounds)."""
        layers = _peft_layers(sam)
        unmerged = {n: layer.get_base_layer() for n, layer in layers.items() if not layer.merged}
        saved = {n: {k: v.clone() for k, v in b.state_dict().items()} for n, b in unmerged.items()}
        self.merge(sam)
        try:
            for name, layer in layers.items():
                sam.set_submodule(name, layer.get_base_layer())
            state = {k: v.detach().clone() for k, v in sam.state_dict().items()}
        finally:
            for name, layer in layers.items():
                sam.set_submodule(name, layer)
        with warnings.catch_warnings():  # IA3's "unmerge can be inaccurate": restored exactly
            warnings.simplefilter("ignore", UserWarning)
            for name, base in unmerged.items():
                layers[name].unmerge()
                base.load_state_dict(saved[name])
        return state

    def label(self) -> str:
        rank = getattr(self, "rank", None)
        return self.kind if rank is None else f"{self.kind}-r{rank}"


def _peft_layers(model: nn.Module) -> dict[str, BaseTunerLayer]:
    """The peft layers in `model`, by full name (none before a peft adapter was applied, and then
    peft is already imported)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
