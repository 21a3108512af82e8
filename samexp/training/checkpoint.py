"""Checkpoints as a training part: the loop's whole state (samexp.training.state), every
`every` epochs and after the last, and at once when a stop request asks for one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from samexp.training.parts import Part
from samexp.training.state import TrainState

if TYPE_CHECKING:
    from samexp.training.loop import Loop

# where a checkpoint goes (samexp.tracking.resume.Checkpoints): the state, and whether its
# weights are the best the monitor has seen
Save = Callable[[TrainState, bool], None]


class Checkpointing(Part):
    """`save` is None on the ranks that write nothing (all but rank 0): they still stop with a
    state, for the message that says where."""

    def __init__(self, save: Save | None, every: int = 1) -> None:
        self.save, self.every = save, every

    def after_epoch(self, loop: Loop) -> None:
        if self.save is not None and self.every and (loop.epoch % self.every == 0 or loop.last):
            self.save(loop.snapshot(complete=True), loop.improved)

    def now(self, loop: Loop, complete: bool) -> TrainState:
        """A checkpoint of where the loop is: at an epoch's end (`complete`) or inside one."""
        state = loop.snapshot(complete)
        if self.save is not None:
            self.save(state, False)
        return state
