"""Learning-rate schedules, each built from (optimizer, total_steps) and told when to step.

`Schedule.interval` says who steps it: every optimizer step, every epoch, or after every
evaluation with the monitored metric (ReduceLROnPlateau).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

from samexp.config.checks import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Range, because
from samexp.config.options import option


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


@option("scheduler", "constant", provided=("optimizer", "total_steps", "mode"))
def constant(optimizer: torch.optim.Optimizer, total_steps: int, mode: str = "max") -> Schedule:
    return Schedule(None, "step")


@option("scheduler", "cosine", provided=("optimizer", "total_steps", "mode"))
def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    # fraction of all steps (< 1) or a number of steps (>= 1)
    warmup: Annotated[float, NON_NEGATIVE] = 0.05,
    min_lr_ratio: Annotated[float, Range(0, 1)] = 0.0,
) -> Schedule:
    """Linear warmup from 0, then cosine decay to `min_lr_ratio` × lr at the last step."""
    warmup_steps = int(warmup * total_steps) if warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return Schedule(LambdaLR(optimizer, factor), "step")


@option("scheduler", "step", provided=("optimizer", "total_steps", "mode"))
def step_decay(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    step_size: Annotated[int, because(AT_LEAST_1, "epochs")] = 10,
    gamma: Annotated[float, POSITIVE] = 0.1,
) -> Schedule:
    """Multiply the lr by `gamma` every `step_size` epochs."""
    return Schedule(StepLR(optimizer, step_size=step_size, gamma=gamma), "epoch")


@option("scheduler", "plateau", provided=("optimizer", "total_steps", "mode"))
def plateau(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    mode: str = "max",
    factor: Annotated[float, Range(0, 1, open_low=True, open_high=True)] = 0.5,
    # evaluations without improvement of trainer.monitor
    patience: Annotated[int, NON_NEGATIVE] = 2,
    min_lr: Annotated[float, NON_NEGATIVE] = 0.0,
) -> Schedule:
    """Cut the lr by `factor` when the monitored eval metric stops improving (`mode` follows trainer.monitor_mode)."""
    return Schedule(
        ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr),
        "metric",
    )
