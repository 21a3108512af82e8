"""What every adapter is: a way to decide which of SAM's parameters train, applied in place.

Adapters never copy SAM's code: they freeze, unfreeze, or wrap its submodules at run time.
`spec()` is what gets saved beside the weights so the same adapter can be rebuilt on reload: its
registered `kind` and hyperparameters (see `registry.py`), never an import path.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class Adapter(ABC):
    kind: str = "adapter"
    # False for a method that adds modules no stock model has (a parallel bottleneck MLP): it
    # cannot be folded into the base weights, so `plain_state_dict` (export) refuses it in one
    # line; samexp's own predict, evaluate and demo load it from its adapter file
    mergeable: bool = True

    @abstractmethod
    def apply(self, sam: nn.Module) -> None:
        """Freeze / inject in place so that exactly this adapter's parameters require grad."""

    def spec(self) -> dict[str, Any]:
        """`kind` + hyperparameters, stored with the weights; reloading looks the kind up in the
        adapter registry, so a file cannot name any other code."""
        return {"kind": self.kind, **self.hparams()}

    def hparams(self) -> dict[str, Any]:
        """The constructor's arguments as this adapter holds them, read from the one definition,
        its signature (the same one the config schema comes from): every argument is kept as the
        attribute of its name, so a new argument is saved and reloaded with no second list to
        update, and one the class forgets to keep is an error, not a silent default on reload."""
        names = [
            name
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        missing = [n for n in names if not hasattr(self, n)]
        if missing:
            raise TypeError(
                f"{type(self).__name__} keeps no attribute for its argument(s) {missing}: "
                "store each constructor argument as self.<name> (hparams are read from them)"
            )
        return {n: _plain(getattr(self, n)) for n in names}

    def label(self) -> str:
        """Short name for run names, e.g. `lora-r8`."""
        return self.kind

    def merge(self, sam: nn.Module) -> None:
        """Fold trained deltas into base weights (no-op for adapters that train weights directly)."""

    def unmerge(self, sam: nn.Module) -> None:
        """Undo `merge`."""

    def plain_state_dict(self, sam: nn.Module) -> dict[str, torch.Tensor]:
        """The adapted model as a stock SAM state dict (what `sam_model_registry[...]` loads)."""
        return {k: v.detach().clone() for k, v in sam.state_dict().items()}


def _plain(value: Any) -> Any:
    """JSON's shapes: tuples become lists (the metadata is JSON; a reload compares equal)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def unfreeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(True)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def parameter_counts(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable}
