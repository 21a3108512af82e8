"""Learning-rate schedules, each built from (optimizer, total_steps) and told when to step.

`Schedule.interval` says who steps it: every optimizer step, every epoch, or after every
evaluation with the monitored metric (ReduceLROnPlateau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

from samexp.errors import SamexpError


@dataclass
class Schedule:
    scheduler: LRScheduler | ReduceLROnPlateau | None
    interval: Literal["step", "epoch", "metric"]

    def step(self, when: str, metric: float | None = None) -> None:
        if self.scheduler is None or when != self.interval:
            return
        if self.interval == "metric":
            self.scheduler.step(metric)
        else:
            self.scheduler.step()


def constant(optimizer: torch.optim.Optimizer, total_steps: int, mode: str = "max") -> Schedule:
    return Schedule(None, "step")


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    warmup: float = 0.05,
    min_lr_ratio: float = 0.0,
) -> Schedule:
    """Linear warmup from 0, then cosine decay to `min_lr_ratio` × lr at the last step."""
    if warmup < 0 or not 0 <= min_lr_ratio <= 1:
        raise SamexpError(
            f"scheduler.warmup must be >= 0 and min_lr_ratio in [0, 1], got {warmup}, {min_lr_ratio}"
        )
    warmup_steps = int(warmup * total_steps) if warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return Schedule(LambdaLR(optimizer, factor), "step")


def step_decay(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    step_size: int = 10,
    gamma: float = 0.1,
) -> Schedule:
    """Multiply the lr by `gamma` every `step_size` epochs."""
    if step_size < 1:
        raise SamexpError(f"scheduler.step_size must be >= 1 epoch, got {step_size}")
    return Schedule(StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch")


def plateau(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    factor: float = 0.5,
    patience: int = 2,
    min_lr: float = 0.0,
) -> Schedule:
    """Cut the lr by `factor` when the monitored eval metric stops improving (`mode` follows trainer.monitor_mode)."""
    return Schedule(
        ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr),
        "metric",
    )
