"""LR schedules: warmup then cosine, step decay per epoch, plateau on the monitored metric."""

from __future__ import annotations

import pytest
import torch

from samexp.config.errors import SamexpError
from samexp.training.schedulers import constant, plateau, step_decay, warmup_cosine


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(schedule, optimizer, steps: int, when: str = "step") -> list[float]:
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step(when)
    return out


def test_warmup_rises_linearly_then_cosine_decays_to_the_floor():
    opt = _optimizer()
    lrs = _lrs(warmup_cosine(opt, total_steps=20, warmup=4, min_lr_ratio=0.1), opt, 21)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert all(
        a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False)
    )  # monotone decay after warmup
    assert lrs[20] == pytest.approx(0.1)
    assert lrs[12] == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine


def test_warmup_given_as_a_fraction_of_all_steps():
    opt = _optimizer()
    lrs = _lrs(warmup_cosine(opt, total_steps=100, warmup=0.1), opt, 11)
    assert lrs[9] == pytest.approx(1.0) and lrs[0] == pytest.approx(0.1)


def test_step_decay_moves_only_at_epoch_ends():
    opt = _optimizer()
    schedule = step_decay(opt, total_steps=100, step_size=2, gamma=0.5)
    _lrs(schedule, opt, 10, when="step")  # optimizer steps never move it
    assert opt.param_groups[0]["lr"] == 1.0
    assert _lrs(schedule, opt, 5, when="epoch") == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25])


def test_plateau_cuts_the_lr_when_the_metric_stalls():
    opt = _optimizer()
    schedule = plateau(opt, total_steps=10, mode="max", factor=0.5, patience=1)
    for value in [0.5, 0.6, 0.6, 0.6]:
        schedule.step("metric", value)
    assert opt.param_groups[0]["lr"] == 0.5
    schedule.step("epoch")  # plateau ignores epoch ends
    assert opt.param_groups[0]["lr"] == 0.5


def test_constant_never_changes_the_lr():
    opt = _optimizer(0.3)
    assert set(_lrs(constant(opt, 10), opt, 5)) == {0.3}


def test_bad_schedule_values_are_refused():
    with pytest.raises(SamexpError, match="warmup"):
        warmup_cosine(_optimizer(), 10, warmup=-1)
    with pytest.raises(SamexpError, match="step_size"):
        step_decay(_optimizer(), 10, step_size=0)
