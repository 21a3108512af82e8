"""Which evaluation decides the best epoch, early stopping and plateau schedules, and the best
weights it keeps (restored for the final test when `trainer.restore_best`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import nn

from samexp.adapters.base import trainable_parameters
from samexp.config.errors import ConfigValueError
from samexp.training.evaluation import metric_safe
from samexp.training.parts import Part

if TYPE_CHECKING:
    from samexp.training.loop import Loop

log = logging.getLogger(__name__)


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

    def update(self, value: float, epoch: int, sam: nn.Module) -> bool:
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
        self.best = progress.get("best", math.nan)
        self.best_epoch, self.stale = progress.get("best_epoch", 0), progress.get("stale", 0)
        self.best_state = best_state

    def restore(self, sam: nn.Module) -> None:
        params = trainable_parameters(sam)
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value)


class MonitorState(TypedDict, total=False):
    """The monitor's record (empty when the run evaluates without one)."""

    best: float
    best_epoch: int
    stale: int
    best_params: dict[str, torch.Tensor]


class Validation(Part):
    """Evaluate every `every` epochs (and the last one), let the monitor keep the best weights,
    step a plateau schedule and stop early; `evaluate(epoch)` returns `val/...` figures."""

    key, State = "monitor", MonitorState

    def __init__(self, evaluate: Callable[[int], dict[str, float]], monitor: Monitor | None = None,
                 every: int = 1) -> None:  # fmt: skip
        self.evaluate, self.monitor, self.every = evaluate, monitor, every

    def epoch_end(self, loop: Loop) -> None:
        loop.improved = False
        if loop.epoch % self.every and loop.epoch != loop.epochs and not loop.out_of_steps:
            return
        figures = self.evaluate(loop.epoch)
        loop.metrics.update(figures)
        monitor = self.monitor
        if monitor is None:
            return
        value = figures.get(monitor.name, math.nan)
        loop.improved = monitor.improved(value)
        loop.stopped_early = monitor.update(value, loop.epoch, loop.sam)
        loop.schedule.step("metric", value)
        if loop.stopped_early:
            log.info("early stop: %s did not improve for %d evaluations (best %.4f at epoch %d)",
                     monitor.name, monitor.stale, monitor.best, monitor.best_epoch)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        if self.monitor is None:
            return {}
        return {**self.monitor.progress(), "best_params": self.monitor.best_state}

    def load_state_dict(self, state: dict[str, Any], loop: Loop) -> None:
        if self.monitor is not None:
            best = {n: t.to(loop.device) for n, t in state.get("best_params", {}).items()}
            self.monitor.resume(state, best)

    @staticmethod
    def weights_in(state: dict[str, Any]) -> dict[str, torch.Tensor]:
        return state.get("best_params", {})


def check_monitor(
    monitor: str, categories: Sequence[str] | None, by_class: bool, split: str
) -> None:
    """Refuse, before training, a `trainer.monitor` that no evaluation of `split` will report
    (`iou/<a category it lacks>`): its value would be NaN every epoch, no epoch would ever be
    best and none restored. Evaluation names a metric per category (`iou/<category>`) when it
    scores by class, or when instances come in more than one category; `categories` are the
    split's (None: it declares none, its instances are all one kind)."""
    named = [metric_safe(c) for c in categories or []]
    per_category = named if by_class or len(named) > 1 else []
    valid = ["iou", "dice", *(f"{m}/{c}" for m in ("iou", "dice") for c in per_category)]
    if monitor in valid:
        return
    if not per_category:
        raise ConfigValueError(
            f"trainer.monitor={monitor}: {split} has no categories to monitor apart (its "
            f"instances are {'of one category' if named else 'all one kind'}); valid monitors: "
            "iou, dice"
        )
    raise ConfigValueError(
        f"trainer.monitor={monitor}: {split} has no such category; valid monitors: iou, dice, "
        f"and iou/<category> or dice/<category> for {', '.join(per_category)}"
    )
