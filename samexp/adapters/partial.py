"""Partial fine-tuning: an adapter that trains a chosen subset of SAM's own parameters in place
(biases, norms, attention layers). Nothing is injected, so the trained model is the stock model:
merge has nothing to fold and export writes the state dict as it is."""

from __future__ import annotations

from abc import abstractmethod

from torch import nn

from samexp.adapters.base import Adapter, freeze
from samexp.config.errors import SamexpError


class PartialAdapter(Adapter):
    """Subclasses say which parameters train (`chosen`); `apply` freezes the rest."""

    @abstractmethod
    def chosen(self, model: nn.Module) -> list[str]:
        """Full names of the parameters this adapter trains on `model`, by role."""

    def apply(self, model: nn.Module) -> None:
        names = self.chosen(model)  # before freezing: a refused model is left as it was
        if not names:
            raise SamexpError(
                f"adapter={self.kind} finds no parameter to train in {type(model).__name__}: "
                "choose another adapter for this model"
            )
        freeze(model)
        for name in names:
            model.get_parameter(name).requires_grad_(True)


def parameter_names(model: nn.Module, module: str, recurse: bool = True) -> list[str]:
    """The full names of module `module`'s parameters (its children's too unless `recurse=False`)."""
    owner = model.get_submodule(module)
    return [f"{module}.{n}" for n, _ in owner.named_parameters(recurse=recurse)]


def refuse_unknown_attention(kind: str, unknown: tuple[str, ...]) -> None:
    """An encoder attention of a class no family describes is never adapted by guess."""
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise SamexpError(
            f"adapter={kind} cannot adapt {unknown[0]}{more}: no model family describes this "
            "attention class; describe it in its family module (samexp.models.roles."
            "register_family)"
        )
