"""What training cost, logged by every run so a study can weigh a method's gain against it:
`train/seconds_per_step`, `train/wall_s`, `train/peak_memory_mb` (and where that peak was read).

- `train/seconds_per_step`: the mean time of an optimizer step (data loading, forward, backward,
  update; the time between two `step_end`s of one epoch, so validation and checkpoints between
  epochs are not in it), over every step of the run except the first, which carries one-off
  warm-up (lazy initialisation, kernel selection); a run of one step reports that step.
- `train/wall_s`: training's wall time, `fit_start` to `fit_end` (epochs, validation and
  checkpoints included; the zero-shot and final test evaluations are not).
- `train/peak_memory_mb`: on CUDA, the most memory torch held allocated on the device during
  training (`torch.cuda.max_memory_allocated`, reset at `fit_start`), also logged as
  `train/peak_cuda_memory_mb`; elsewhere the process's peak resident memory
  (`resource.getrusage(RUSAGE_SELF).ru_maxrss`), which counts the process's whole life, its
  baseline (Python, torch, the model, the data read) and the zero-shot evaluation included.
  `train/peak_rss_mb` is that host figure on every device; a run whose metrics hold
  `train/peak_cuda_memory_mb` measured the device.

A resumed run goes on from the interrupted one's figures (the part's state is in the checkpoint),
so its step mean and wall time cover the whole run, not the last part of it.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

import torch

from samexp.training.parts import Part

if TYPE_CHECKING:
    from samexp.training.loop import Loop

MB = 2**20


class CostsState(TypedDict):
    wall_s: float  # training time before the interruption
    first_s: float  # the run's first step (warm-up); -1 before it
    step_s: float  # summed time of the steps after it
    steps_timed: int


class Costs(Part):
    """Times optimizer steps and training, reads the peak memory, and logs them at `fit_end`
    through `log(metrics, epoch)`."""

    key, State = "costs", CostsState

    def __init__(self, device: torch.device, log: Callable[[dict[str, float], int], None]) -> None:
        self.device, self.log = device, log
        self.before = CostsState(wall_s=0.0, first_s=-1.0, step_s=0.0, steps_timed=0)
        self.state = dict(self.before)
        self.started = self.mark = 0.0

    def fit_start(self, loop: Loop) -> None:
        self.started = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def epoch_start(self, loop: Loop) -> None:
        self.mark = time.perf_counter()

    def step_end(self, loop: Loop) -> None:
        now, s = time.perf_counter(), self.state
        if s["first_s"] < 0:
            s["first_s"] = now - self.mark
        else:
            s["step_s"] += now - self.mark
            s["steps_timed"] += 1
        self.mark = now

    def fit_end(self, loop: Loop) -> None:
        self.log(self.figures(), loop.epoch)

    def figures(self) -> dict[str, float]:
        s = self.state
        rss = peak_rss_mb()
        out = {
            "train/seconds_per_step": s["step_s"] / s["steps_timed"]
            if s["steps_timed"]
            else max(s["first_s"], 0.0),  # a run of one step: that step
            "train/wall_s": s["wall_s"] + time.perf_counter() - self.started,
            "train/peak_rss_mb": rss,
            "train/peak_memory_mb": rss,
        }
        if self.device.type == "cuda":
            cuda = torch.cuda.max_memory_allocated(self.device) / MB
            out["train/peak_cuda_memory_mb"] = out["train/peak_memory_mb"] = cuda
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**self.state, "wall_s": self.state["wall_s"] + time.perf_counter() - self.started}

    def load_state_dict(self, state: dict[str, Any], loop: Loop) -> None:
        self.state = {**self.before, **state}


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MB if sys.platform == "darwin" else 1024)
