"""Steps whose loss or gradient is not finite: skipped, counted, and ended as a diverged run
when they keep coming, with advice in the user's words."""

from __future__ import annotations

from dataclasses import dataclass

from samexp.config.errors import TrainingDiverged

# skipped non-finite steps in a row that end a run as diverged (trainer.max_nonfinite_steps)
MAX_NONFINITE_STEPS = 20


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
