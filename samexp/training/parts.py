"""The parts the training loop calls at fixed points: each concern (stop requests, divergence,
validation and early stopping, tracking, checkpoints) is one small object, so the loop stays one
page and a new trainer feature is one part plus its config fields, never a keyword threaded
through `fit`. A part that must survive an interruption says what it keeps (`state_dict`, typed by
`State`); a checkpoint holds the state of every part, collected here, not from a hand-kept list.

Hooks, in the order the loop calls them (see samexp/training/loop.py):
`fit_start` -> per epoch: `epoch_start` -> `step_end` after each optimizer step -> `epoch_end`
(judge the epoch: its figures are in `loop.metrics`) -> the schedule's epoch step -> `after_epoch`
(keep it: log, checkpoint, stop) -> `fit_end`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from samexp.training.loop import Loop


class Part:
    """Every hook does nothing unless overridden; a part raises to end training (a stop
    request, a diverged run, a pruned trial)."""

    # its key in a checkpoint's `parts`; None: it keeps nothing across an interruption
    key: ClassVar[str | None] = None
    # a TypedDict of `state_dict()`: a checkpoint read back is checked against it before use
    State: ClassVar[Any] = None

    def fit_start(self, loop: Loop) -> None: ...
    def epoch_start(self, loop: Loop) -> None: ...
    def step_end(self, loop: Loop) -> None: ...
    def epoch_end(self, loop: Loop) -> None: ...
    def after_epoch(self, loop: Loop) -> None: ...
    def fit_end(self, loop: Loop) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any], loop: Loop) -> None: ...

    @staticmethod
    def weights_in(state: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Copies of trainable parameters its state holds: they must fit the model built now."""
        return {}


class Parts:
    """The loop's parts in call order; one call runs a hook on each."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self.parts = list(parts)
        keys = [p.key for p in self.parts if p.key is not None]
        if len(keys) != len(set(keys)):
            raise ValueError(f"two training parts keep their state under one key: {keys}")

    def __getattr__(self, hook: str):
        if hook not in vars(Part) or not callable(vars(Part)[hook]):
            raise AttributeError(hook)

        def call(loop: Loop) -> None:
            for part in self.parts:
                getattr(part, hook)(loop)

        return call

    @property
    def kept(self) -> dict[str, Part]:
        """The parts whose state a checkpoint holds, by key."""
        return {p.key: p for p in self.parts if p.key is not None}

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {key: part.state_dict() for key, part in self.kept.items()}

    def load_state_dict(self, states: dict[str, dict[str, Any]], loop: Loop) -> None:
        for key, part in self.kept.items():
            part.load_state_dict(states[key], loop)
