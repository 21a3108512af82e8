"""Steps whose loss or gradient is not finite: skipped, counted, and ended as a diverged run
when they keep coming, with advice in the user's words."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from samexp.config.errors import TrainingDiverged
from samexp.config.schema import MAX_NONFINITE_STEPS
from samexp.training.parts import Part

if TYPE_CHECKING:
    from samexp.training.loop import Loop

log = logging.getLogger(__name__)


@dataclass
class NonFiniteGuard:
    """Counts optimizer steps skipped for a non-finite loss or gradient, and ends a run that keeps
    producing them: such a step would write NaN into the weights, and every later one with them."""

    limit: int  # skipped steps in a row that end the run
    skipped: int = 0  # in the whole run (logged as train/skipped_nonfinite)
    in_a_row: int = 0
    epoch_steps: int = 0
    epoch_skipped: int = 0
    last_loss_finite: bool = True

    def new_epoch(self) -> None:
        self.epoch_steps = self.epoch_skipped = 0

    def record(self, stepped: bool, loss_finite: bool) -> None:
        self.epoch_steps += 1
        self.last_loss_finite = loss_finite
        if stepped:
            self.in_a_row = 0
        else:
            self.skipped += 1
            self.epoch_skipped += 1
            self.in_a_row += 1

    def verdict(self, epoch: int, end_of_epoch: bool = False, end_of_run: bool = False) -> str | None:  # fmt: skip
        """What makes the run diverged, or None: `limit` skipped steps in a row, a whole epoch of
        them, or a run that ends on a non-finite loss (its model no longer computes one)."""
        if self.in_a_row >= self.limit:
            return f"{self.in_a_row} optimizer steps in a row"
        if end_of_epoch and self.epoch_steps and self.epoch_skipped == self.epoch_steps:
            return f"all {self.epoch_steps} optimizer steps of epoch {epoch}"
        if end_of_run and not self.last_loss_finite:
            return "the last optimizer step"
        return None

    def fail(self, what: str, epoch: int, step: int, loss: float, lr: float, precision: str):
        hints = [f"lower optim.lr (now {lr:g})", "set trainer.grad_clip"]
        if precision != "fp32":
            hints.insert(1, f"use trainer.precision=fp32 (now {precision})")
        return TrainingDiverged(
            f"training diverged: {what} had a non-finite loss or gradient (last at epoch {epoch} "
            f"step {step}, loss {loss:.4g}); they were skipped and no weights were saved. "
            f"Try: {', or '.join(hints)}"
        )


class GuardState(TypedDict, total=False):
    """NonFiniteGuard's counters, less its limit (which the config sets)."""

    skipped: int
    in_a_row: int
    epoch_steps: int
    epoch_skipped: int
    last_loss_finite: bool


class Divergence(Part):
    """The guard as a training part: counts each optimizer step, logs the skipped ones with the
    epoch's figures, and ends a diverged run (its count logged first, `log(metrics, step)`)."""

    key, State = "guard", GuardState

    def __init__(self, limit: int = MAX_NONFINITE_STEPS,
                 log_fn: Callable[[dict[str, float], int], None] | None = None) -> None:  # fmt: skip
        self.guard, self.log_fn = NonFiniteGuard(limit), log_fn

    def epoch_start(self, loop: Loop) -> None:
        if not loop.skip:  # not the epoch a resume continues
            self.guard.new_epoch()

    def step_end(self, loop: Loop) -> None:
        self.guard.record(loop.stepped, loop.step_finite)
        self._judge(loop)

    def epoch_end(self, loop: Loop) -> None:
        loop.metrics["train/skipped_nonfinite"] = self.guard.skipped
        if self.guard.epoch_skipped:
            log.warning("epoch %d: skipped %d of %d optimizer steps with a non-finite loss or "
                        "gradient", loop.epoch, self.guard.epoch_skipped, self.guard.epoch_steps)  # fmt: skip
        self._judge(loop, end_of_epoch=True)

    def fit_end(self, loop: Loop) -> None:
        self._judge(loop, end_of_run=True)

    def _judge(self, loop: Loop, **when: bool) -> None:
        what = self.guard.verdict(loop.epoch, **when)
        if what is None:
            return
        if self.log_fn is not None:
            self.log_fn({"train/skipped_nonfinite": self.guard.skipped}, loop.epoch)
        raise self.guard.fail(what, loop.epoch, loop.step, loop.loss.item(), loop.lr, loop.amp.name)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self.guard).items() if k != "limit"}

    def load_state_dict(self, state: dict[str, Any], loop: Loop) -> None:
        for key, value in state.items():
            setattr(self.guard, key, value)
