"""The MLflow sink: flat params, provenance tags, a no-op when disabled, runs stored where configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient
from PIL import Image

from samexp.tracking import Tracker, flatten, provenance


def test_flatten_joins_nested_keys_with_dots_and_keeps_leaves():
    nested = {"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": None, "g": {}}
    assert flatten(nested) == {"a.b": 1, "a.c.d": "x", "e": [1, 2], "f": None}


def test_provenance_records_git_state_package_versions_and_overrides():
    tags = provenance(["adapter=lora", "trainer.epochs=3"])
    assert tags["overrides"] == "adapter=lora trainer.epochs=3"
    assert len(tags["git_commit"]) == 40  # the repo is a git checkout in dev and CI
    assert tags["git_dirty"] in {"true", "false"}
    assert tags["version.torch"]
    assert tags["version.mlflow"]


def test_disabled_tracker_is_a_no_op_that_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(
        enabled=False,
        tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        artifact_root=str(tmp_path / "artifacts"),
    )
    with tracker.start_run("name", params={"a": 1}, tags={"t": "v"}):
        tracker.log_metrics({"x": 1.0}, step=1)
        tracker.log_text("text", "a.txt")
        tracker.log_json({"a": 1}, "a.json")
        tracker.log_image(np.zeros((4, 4, 3), dtype=np.uint8), "a.png")
        tracker.log_artifact(__file__, "files")
    assert tracker.run_id is None
    assert list(tmp_path.iterdir()) == []


def test_tracker_creates_the_experiment_with_artifacts_under_artifact_root(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/db/mlflow.db"  # the database's folder is created on demand
    root = tmp_path / "artifacts"
    tracker = Tracker(tracking_uri=uri, artifact_root=str(root), experiment="tracking-test")
    image = np.zeros((8, 12, 3), dtype=np.uint8)
    image[2:6, 3:9] = (255, 0, 0)
    with tracker.start_run("my-run", params={"a.b": 1, "long": "x" * 7000}, tags={"t": "v"}):
        tracker.log_metrics({"train/loss": 0.5}, step=3)
        tracker.log_image(image, "comparisons/one.png")
        tracker.log_json({"k": [1, 2]}, "metrics/rows.json")

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    experiment = client.get_experiment_by_name("tracking-test")
    assert run.info.experiment_id == experiment.experiment_id
    assert experiment.artifact_location == root.resolve().as_uri()
    assert run.info.artifact_uri.startswith(root.resolve().as_uri())
    assert run.info.run_name == "my-run"
    assert run.data.tags["t"] == "v"
    assert run.data.params["a.b"] == "1"
    # MLflow rejects params over 6000 characters; the tracker shortens them instead of failing
    assert len(run.data.params["long"]) == 6000
    assert [
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")
    ] == [(3, 0.5)]

    logged = list(root.rglob("comparisons/one.png"))
    assert len(logged) == 1
    assert np.array_equal(np.asarray(Image.open(logged[0]).convert("RGB")), image)


def test_configured_run_name_overrides_the_one_the_runner_chooses(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(tracking_uri=uri, artifact_root=str(tmp_path / "art"), run_name="mine")
    with tracker.start_run("lora-r8-rings-tiny", params={}, tags={}):
        pass
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.run_name == "mine"


def test_a_second_run_reuses_the_existing_experiment(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ids = []
    for _ in range(2):
        tracker = Tracker(tracking_uri=uri, artifact_root=str(tmp_path / "art"), experiment="again")
        with tracker.start_run("r", params={}, tags={}):
            pass
        ids.append(MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.experiment_id)
    assert ids[0] == ids[1]
