"""Which evaluation decides the best epoch, early stopping and plateau schedules, and the best
weights it keeps (restored for the final test when `trainer.restore_best`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from segment_anything.modeling import Sam

from samexp.adapters.base import trainable_parameters


@dataclass
class Monitor:
    """Which eval metric decides the best epoch, early stopping and plateau schedules."""

    name: str  # full metric name, e.g. "val/iou"
    mode: str = "max"
    patience: int | None = None
    best: float = math.nan
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stale: int = 0

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if math.isnan(self.best):
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def update(self, value: float, epoch: int, sam: Sam) -> bool:
        """Record an evaluation; True when training should stop (patience exhausted)."""
        if self.improved(value):
            self.best, self.best_epoch, self.stale = value, epoch, 0
            self.best_state = {n: p.detach().clone() for n, p in trainable_parameters(sam).items()}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def progress(self) -> dict[str, float | int]:
        return {"best": self.best, "best_epoch": self.best_epoch, "stale": self.stale}

    def resume(self, progress: dict[str, float | int], best_state: dict[str, torch.Tensor]) -> None:
        self.best, self.best_epoch, self.stale = (
            progress[k] for k in ("best", "best_epoch", "stale")
        )
        self.best_state = best_state

    def restore(self, sam: Sam) -> None:
        params = trainable_parameters(sam)
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value)
