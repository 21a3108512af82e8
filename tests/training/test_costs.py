"""What training cost, logged once at its end by every run: the mean optimizer step without the
warm-up step, training's wall time (carried across a resume), the peak memory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.training.costs import Costs
from tests.training.test_loop import _decoder_model, _fit

LOOP = SimpleNamespace(epoch=1)


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("samexp.training.costs.time.perf_counter", lambda: now[0])
    return now


def run_steps(costs: Costs, clock, ends: list[float]) -> None:
    costs.fit_start(LOOP)
    costs.epoch_start(LOOP)
    for t in ends:
        clock[0] = t
        costs.step_end(LOOP)


def test_seconds_per_step_is_the_mean_of_the_steps_after_the_first(clock):
    logged = []
    costs = Costs(torch.device("cpu"), lambda m, epoch: logged.append(m))
    run_steps(costs, clock, [5.0, 6.0, 8.0])  # a 5 s warm-up step, then 1 s and 2 s
    clock[0] = 10.0
    costs.fit_end(LOOP)
    (figures,) = logged
    assert figures["train/seconds_per_step"] == 1.5
    assert figures["train/wall_s"] == 10.0
    assert figures["train/peak_memory_mb"] == figures["train/peak_rss_mb"] > 0  # CPU: the RSS
    assert "train/peak_cuda_memory_mb" not in figures


def test_a_run_of_one_step_reports_that_step(clock):
    costs = Costs(torch.device("cpu"), lambda m, epoch: None)
    run_steps(costs, clock, [3.0])
    assert costs.figures()["train/seconds_per_step"] == 3.0


def test_a_resumed_run_goes_on_from_the_interrupted_runs_figures(clock):
    first = Costs(torch.device("cpu"), lambda m, epoch: None)
    run_steps(first, clock, [5.0, 6.0])
    kept = first.state_dict()  # written into the checkpoint at t=6
    resumed = Costs(torch.device("cpu"), lambda m, epoch: None)
    resumed.load_state_dict(kept, LOOP)
    clock[0] = 100.0
    run_steps(resumed, clock, [103.0])
    clock[0] = 104.0
    figures = resumed.figures()
    assert figures["train/seconds_per_step"] == 2.0  # (1 + 3) / 2: no second warm-up dropped
    assert figures["train/wall_s"] == 6.0 + 4.0


def test_a_training_run_logs_its_costs_once_at_its_end(shapes_root):
    logged = []
    data = FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256))
    _fit(_decoder_model(), data, batch_size=2, epochs=1, max_steps=3,
         parts=[Costs(torch.device("cpu"), lambda m, epoch: logged.append((epoch, m)))])  # fmt: skip
    ((epoch, figures),) = logged
    assert epoch == 1 and set(figures) == {"train/seconds_per_step", "train/wall_s",
                                           "train/peak_memory_mb", "train/peak_rss_mb"}  # fmt: skip
    assert 0 < figures["train/seconds_per_step"] < figures["train/wall_s"]
