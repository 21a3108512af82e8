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
