"""`python -m samexp.evaluate`: a saved run's model on another dataset, with a run's figures; on the
run's own test split it reproduces the run's own baseline and final metrics exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from samexp.config.errors import SamexpError
from samexp.evaluate.saved import evaluate_saved
from tests.conftest import CONF_DIR, REPO, TinyRun, data_root
from tests.data.test_labelmap import write_labelmap


@pytest.fixture(scope="module", params=["tiny_decoder_run", "tiny_sam2_run"])
def saved_run(request: pytest.FixtureRequest):
    """A session's tiny run on the rings (a SAM decoder fine-tune, a SAM 2.1 LoRA): its MLflow
    store, run id, weights and metrics."""
    run: TinyRun = request.getfixturevalue(request.param)
    return {"uri": run.tracking_uri, "tmp": run.home, "run_id": run.run_id, "metrics": run.metrics}


def _config(saved, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("evaluate", overrides=[f"data_root={data_root()}",
                                              f"tracking.tracking_uri={saved['uri']}",
                                              f"tracking.artifact_root={saved['tmp']}/art",
                                              *overrides])  # fmt: skip


def test_on_the_runs_own_test_split_it_reproduces_the_runs_figures(saved_run, tmp_path):
    metrics = evaluate_saved(_config(saved_run, f"run_id={saved_run['run_id']}"), tmp_path)
    for key in ("baseline/test/iou", "final/test/iou", "final/test/dice", "delta/test/iou"):
        assert metrics[key] == pytest.approx(saved_run["metrics"][key], abs=1e-6), key
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["metrics"] == metrics and written["split"] == "test"
    client = MlflowClient(saved_run["uri"])
    (evaluation,) = client.search_runs(
        [client.get_experiment_by_name("samexp").experiment_id],
        filter_string=f"tags.`samexp.evaluates` = '{saved_run['run_id']}'",
    )
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.metrics["final/test/iou"] == pytest.approx(metrics["final/test/iou"])
    assert {a.path for a in client.list_artifacts(evaluation.info.run_id)} >= {
        "comparisons",
        "metrics",
    }


def test_a_held_out_test_split_is_the_one_the_run_logged(saved_run, tmp_path):
    # the run's two test images, now read as a folder without a test split: a fresh hold-out would
    # keep one for training; the evaluation takes the run's list and reproduces its figures
    metrics = evaluate_saved(_config(saved_run, f"run_id={saved_run['run_id']}",
                                     "dataset.train_split=test", "dataset.test_split=null"), tmp_path)  # fmt: skip
    assert metrics["final/test/iou"] == pytest.approx(
        saved_run["metrics"]["final/test/iou"], abs=1e-6
    )


def test_another_dataset_is_evaluated_per_class_with_the_same_keys(saved_run, tmp_path):
    (tmp_path / "shapes").mkdir()
    root = write_labelmap(tmp_path / "shapes", {"train": {"a": (1, 2)}, "test": {"t": (1, 2, 3)}})
    weights = saved_run["tmp"] / "out" / "adapter.safetensors"
    metrics = evaluate_saved(_config(saved_run, f"weights={weights}", "dataset=labelmap",
                                     f"dataset.root={root}"), tmp_path / "out")  # fmt: skip
    assert {f"final/test/iou/{c}" for c in ("cat", "dog", "bird")} <= set(metrics)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["dataset"] == "shapes"


def test_a_split_the_dataset_lacks_is_refused_naming_the_choices(saved_run, tmp_path):
    with pytest.raises(SamexpError, match="split=val: rings has no such split; choose test, train"):
        evaluate_saved(_config(saved_run, f"run_id={saved_run['run_id']}", "split=val"), tmp_path)


@pytest.mark.slow
def test_the_cli_exits_2_with_one_line_for_a_run_that_does_not_exist(saved_run, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "samexp.evaluate", "run_id=nope", f"data_root={data_root()}",
         f"tracking.tracking_uri={saved_run['uri']}", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in said
    (error,) = [line for line in said.splitlines() if "ERROR" in line]
    assert "run_id=nope is not a run in " + saved_run["uri"] in error
