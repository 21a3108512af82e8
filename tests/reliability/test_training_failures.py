"""A run that diverges, or that has no validation split, is never saved or reported as a good
result: non-finite steps are skipped and counted, a diverged run ends FAILED with no weights, and
the test split never chooses the model."""

from __future__ import annotations

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from monai.losses import DiceLoss
from optuna.trial import TrialState
from torch.utils.data import DataLoader

from samexp import runner
from samexp.adapters.base import trainable_parameters
from samexp.config.errors import SamexpError, TrainingDiverged
from samexp.data.base import collate
from samexp.data.folder import FolderDataset
from samexp.data.frame import Pipeline
from samexp.prompts.box import BoxPrompt
from samexp.training.losses import SamLoss
from tests.config.test_cli import samexp
from tests.conftest import data_root
from tests.predict.test_cli import one_error_line
from tests.training.fitting import fit_with
from tests.training.test_loop import _decoder_model

TINY = ("model=tiny", "adapter=decoder", "trainer.device=cpu")


class NanOnCalls(SamLoss):
    """The real loss, except NaN on the chosen calls (0-based): a step that blew up."""

    def __init__(self, nan_calls: set[int]) -> None:
        super().__init__(DiceLoss(sigmoid=True))
        self.nan_calls, self.calls = nan_calls, 0

    def forward(self, logits, target, iou_pred):
        total, parts = super().forward(logits, target, iou_pred)
        self.calls += 1
        return (total * torch.nan if self.calls - 1 in self.nan_calls else total), parts


def _fit_with(loss_fn, shapes_root, **kwargs):
    sam = _decoder_model()
    loader = DataLoader(FolderDataset(str(shapes_root), "train", pipeline=Pipeline(256)), batch_size=2,
                        collate_fn=collate)  # fmt: skip
    optimizer = torch.optim.SGD(list(trainable_parameters(sam).values()), lr=0.1)
    logged: list[dict] = []
    result = fit_with(sam, loader, BoxPrompt(jitter=0), loss_fn, optimizer,
                      log_fn=lambda m, step: logged.append(m), **kwargs)  # fmt: skip
    return sam, result, logged


def test_a_non_finite_step_is_skipped_counted_and_leaves_the_weights_finite(shapes_root):
    sam, result, logged = _fit_with(NanOnCalls({1}), shapes_root, epochs=1)
    assert result.steps == 4  # 8 images in batches of 2: the NaN one is skipped, not the run
    assert logged[-1]["train/skipped_nonfinite"] == 1
    assert all(torch.isfinite(p).all() for p in trainable_parameters(sam).values())
    assert torch.isfinite(torch.tensor(logged[-1]["train/loss"]))  # the mean of the finite steps


def test_non_finite_steps_in_a_row_stop_the_run_naming_the_step(shapes_root):
    with pytest.raises(TrainingDiverged, match=r"3 optimizer steps in a row .* epoch 1 step 4"):
        _fit_with(NanOnCalls({1, 2, 3}), shapes_root, epochs=2, max_nonfinite_steps=3)


def test_an_epoch_of_non_finite_steps_stops_the_run_below_the_limit(shapes_root):
    with pytest.raises(TrainingDiverged, match=r"all 4 optimizer steps of epoch 2.*optim.lr"):
        _fit_with(NanOnCalls({4, 5, 6, 7}), shapes_root, epochs=3, max_nonfinite_steps=20)


@pytest.mark.slow
def test_a_diverging_run_ends_failed_with_the_reason_and_writes_no_weights(make_config, tmp_path):
    cfg = make_config(*TINY, "optim.lr=1e6", "trainer.epochs=5")
    with pytest.raises(TrainingDiverged) as diverged:
        runner.run(cfg)
    assert "lower optim.lr (now 1e+06)" in str(diverged.value)
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("samexp").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["samexp.state"] == "FAILED"
    assert "training diverged" in run.data.tags["samexp.error"]
    assert run.data.metrics["train/skipped_nonfinite"] >= 1
    assert not client.list_artifacts(run.info.run_id, "weights")
    assert not list((tmp_path / "out").glob("*.safetensors"))


@pytest.mark.slow
def test_cli_reports_divergence_in_one_line_with_exit_2(tmp_path):
    result = samexp(tmp_path, *TINY, "optim.lr=1e6", "trainer.epochs=3", f"data_root={data_root()}")
    assert "training diverged" in one_error_line(result)


@pytest.mark.slow
def test_a_diverging_sweep_trial_is_failed_in_optuna_not_a_zero_score(tmp_path):
    from tests.sweeps.test_sweeps import optuna_sweep, runs

    # a plain value on the command line fixes a searched parameter for every trial
    optuna_sweep(tmp_path, "hydra.sweeper.n_trials=1", "adapter.rank=2", "optim.lr=1e6",
                 "trainer.max_steps=null", "trainer.epochs=4")  # fmt: skip
    study = optuna.load_study(study_name="test-study", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    _, _, trials = runs(tmp_path)
    assert [t.info.status for t in trials] == ["FAILED"]


@pytest.mark.slow
def test_without_a_validation_split_the_test_split_chooses_nothing(make_config):
    cfg = make_config(*TINY, "trainer.val_fraction=0", "trainer.epochs=2", "optim.lr=1e-2")
    done = runner.run(cfg)
    metrics = done.metrics
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    assert not client.get_metric_history(done.run_id, "test/iou")
    assert (
        metrics["best/epoch"] == 2 and "best/test/iou" not in metrics
    )  # the last epoch, as trained


@pytest.mark.parametrize(
    "option", ["trainer.patience=2", "scheduler=plateau", "objective=best/val/iou"]
)
def test_early_stopping_and_plateau_schedules_are_refused_without_a_validation_split(
    make_config, option
):
    cfg = make_config(*TINY, "trainer.val_fraction=0", option)
    with pytest.raises(SamexpError, match="needs? a validation split.*never used to choose"):
        runner.run(cfg)
