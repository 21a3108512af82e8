"""Config values of the right type that make no sense are refused at startup, before any model is
built, naming the key and what it accepts (today's alternative: a traceback an epoch later, or a
silently wrong result)."""

from __future__ import annotations

import pytest

from samexp import runner
from samexp.config.errors import ConfigValueError
from tests.config.test_cli import samexp
from tests.conftest import compose_config
from tests.predict.test_cli import one_error_line

# override -> the words the one-line refusal must hold
CASES = [
    pytest.param("trainer.epochs=-1", "trainer.epochs=-1: must be >= 1", id="epochs-negative"),
    pytest.param("trainer.epochs=0", "trainer.epochs=0: must be >= 1", id="epochs-zero"),
    pytest.param("trainer.batch_size=0", "trainer.batch_size=0: must be >= 1", id="batch-size-zero"),
    pytest.param("trainer.grad_accum_steps=0", "trainer.grad_accum_steps=0: must be >= 1", id="grad-accum-zero"),
    pytest.param("trainer.eval_every=0", "trainer.eval_every=0: must be >= 1", id="eval-every-zero"),
    pytest.param("trainer.val_fraction=1.5", "trainer.val_fraction=1.5: must be in [0, 1)", id="val-fraction-above-1"),
    pytest.param("trainer.val_fraction=-0.5", "trainer.val_fraction=-0.5: must be in [0, 1)", id="val-fraction-negative"),
    pytest.param("trainer.max_steps=0", "trainer.max_steps=0: must be >= 1", id="max-steps-zero"),
    pytest.param("trainer.monitor=loss", "trainer.monitor='loss': must be iou, dice", id="monitor-loss"),
    pytest.param("trainer.monitor=iuo", "trainer.monitor='iuo': must be iou, dice", id="monitor-typo"),
    pytest.param("trainer.patience=0", "trainer.patience=0: must be >= 1", id="patience-zero"),
    pytest.param("trainer.num_workers=-1", "trainer.num_workers=-1: must be >= 0", id="workers-negative"),
    pytest.param("trainer.sample_cache_gb=-1", "trainer.sample_cache_gb=-1.0: must be >= 0", id="sample-cache-negative"),
    pytest.param("trainer.grad_clip=inf", "trainer.grad_clip=inf: must be a finite number > 0", id="grad-clip-inf"),
    pytest.param("optim.lr=nan", "optim.lr=nan: must be > 0", id="lr-nan"),
    pytest.param("prompt.jitter=inf", "prompt.jitter=inf: must be a finite number >= 0 (fraction of the box side)", id="box-jitter-inf"),
    pytest.param("trainer.grad_clip=0", "trainer.grad_clip=0.0: must be > 0", id="grad-clip-zero"),
    pytest.param("trainer.max_nonfinite_steps=0", "trainer.max_nonfinite_steps=0: must be >= 1", id="nonfinite-limit-zero"),
    pytest.param("optim.lr=0", "optim.lr=0.0: must be > 0", id="lr-zero"),
    pytest.param("optim.lr=-1e-4", "optim.lr=-0.0001: must be > 0", id="lr-negative"),
    pytest.param("adapter.rank=0", "adapter.rank=0: must be >= 1", id="lora-rank-zero"),
    pytest.param("adapter.dropout=1", "adapter.dropout=1.0: must be in [0, 1)", id="lora-dropout-one"),
    pytest.param("dataset.mask_threshold=300", "dataset.mask_threshold=300: must be in [0, 254]", id="mask-threshold-above-254"),
    pytest.param("loss.iou_head_weight=-1", "loss.iou_head_weight=-1.0: must be >= 0", id="loss-weight-negative"),
    pytest.param("scheduler=step scheduler.step_size=0", "scheduler.step_size=0: must be >= 1", id="step-schedule-size-zero"),
    pytest.param("objective=final/test/iuo", "objective='final/test/iuo': must be a metric the run returns", id="objective-typo"),
    pytest.param("objective=best/val/dice", "objective='best/val/dice': the run records best/val/iou (trainer.monitor=iou)", id="objective-not-monitored"),
    pytest.param("tracking.max_images=-1", "tracking.max_images=-1: must be >= 0", id="max-images-negative"),
    pytest.param("seed=-1", "seed=-1: must be >= 0", id="seed-negative"),
    pytest.param("trainer.seed=-1", "trainer.seed=-1: must be >= 0", id="trainer-seed-negative"),
]  # fmt: skip


@pytest.fixture
def no_model_may_be_built(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the config was checked")

    monkeypatch.setattr("samexp.models.build.build_tiny", refuse)


@pytest.mark.parametrize(("override", "message"), CASES)
def test_nonsense_config_value_is_refused_before_any_model_is_built(
    override, message, no_model_may_be_built
):
    cfg = compose_config(["model=tiny", "tracking.enabled=false", *override.split()])
    with pytest.raises(ConfigValueError) as refused:
        runner.run(cfg)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_several_bad_values_are_named_together_on_one_line(no_model_may_be_built):
    cfg = compose_config(["model=tiny", "trainer.epochs=-1", "trainer.batch_size=0"])
    with pytest.raises(ConfigValueError, match=r"trainer.epochs=-1.*; trainer.batch_size=0"):
        runner.run(cfg)


@pytest.mark.slow
def test_cli_refuses_a_nonsense_value_with_one_line_and_exit_2(tmp_path):
    result = samexp(tmp_path, "model=tiny", "trainer.grad_accum_steps=0")
    assert "trainer.grad_accum_steps=0: must be >= 1" in one_error_line(result)
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was opened
