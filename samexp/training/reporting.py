"""What training tells the world, as parts: the epoch's figures (to a log line and to
`log(metrics, epoch)`, which the runner points at MLflow), a heartbeat, and the monitored value
for a sweep's pruner. Training itself never imports the tracker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from samexp.training.parts import Part

if TYPE_CHECKING:
    from samexp.training.loop import Loop

log = logging.getLogger(__name__)


class LogEpochs(Part):
    def __init__(self, log_fn: Callable[[dict[str, float], int], None]) -> None:
        self.log_fn = log_fn

    def after_epoch(self, loop: Loop) -> None:
        log.info("epoch %d: %s", loop.epoch, ", ".join(f"{k}={v:.4f}" for k, v in loop.metrics.items()))  # fmt: skip
        self.log_fn(loop.metrics, loop.epoch)


class Heartbeat(Part):
    """`beat()` after every optimizer step and every epoch; the tracker decides how often it
    really writes (tracking.heartbeat_s), so a long epoch stays alive."""

    def __init__(self, beat: Callable[[], None]) -> None:
        self.beat = beat

    def step_end(self, loop: Loop) -> None:
        self.beat()

    def after_epoch(self, loop: Loop) -> None:
        self.beat()


class ReportToTrial(Part):
    """`report(value, epoch)` with the monitored metric after each evaluation: a sweep's pruning
    hook, which raises to end a hopeless trial."""

    def __init__(self, report: Callable[[float, int], None], name: str) -> None:
        self.report, self.name = report, name

    def after_epoch(self, loop: Loop) -> None:
        if self.name in loop.metrics:
            self.report(loop.metrics[self.name], loop.epoch)
