"""The run picker: finished training runs only, newest first, labelled by what they trained on
what and how well; their test images found again as examples."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from samexp.app.runs import example_images, finished_runs
from samexp.tracking.states import STATE
from tests.app.conftest import Store


def _fake_run(client: MlflowClient, experiment: str, status: str, state: str, iou: float) -> str:
    run = client.create_run(experiment, run_name=f"{status.lower()}-run",
                            tags={STATE: state})  # fmt: skip
    client.log_param(run.info.run_id, "adapter._target_", "samexp.adapters.decoder.DecoderAdapter")
    client.log_param(run.info.run_id, "dataset.root", "/elsewhere/bottles")
    client.log_metric(run.info.run_id, "final/test/iou", iou)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_only_finished_runs_are_offered_newest_first_with_adapter_dataset_and_scores(store: Store):
    client = MlflowClient(store.tracking_uri)
    experiment = client.get_run(store.run_id).info.experiment_id
    time.sleep(0.01)  # start times in milliseconds: the fakes are newer than the real run
    failed = _fake_run(client, experiment, "FAILED", "FAILED", 0.9)
    interrupted = _fake_run(client, experiment, "KILLED", "INTERRUPTED", 0.9)
    newer = _fake_run(client, experiment, "FINISHED", "COMPLETE", 0.5)
    try:
        runs = finished_runs(store.tracking_uri)
        assert [r.run_id for r in runs] == [newer, store.run_id]
        assert failed not in {r.run_id for r in runs} and interrupted not in {
            r.run_id for r in runs
        }
        ours = runs[1]
        assert (ours.adapter, ours.dataset, ours.model) == ("lora r8", "rings", "tiny")
        metrics = client.get_run(store.run_id).data.metrics
        assert ours.iou == metrics["final/test/iou"] and ours.dice == metrics["final/test/dice"]
        assert f"IoU {ours.iou:.3f}" in ours.label() and "lora r8 on rings (tiny)" in ours.label()
        assert runs[0].dataset == "bottles" and runs[0].dice is None
    finally:
        for run_id in (failed, interrupted, newer):
            client.delete_run(run_id)


def test_a_runs_test_images_are_found_under_its_dataset_root(store: Store, rings_root: Path):
    run = next(r for r in finished_runs(store.tracking_uri) if r.run_id == store.run_id)
    images = example_images(run, store.tracking_uri)
    assert images == sorted((rings_root / "test" / "images").glob("*.jpg"))


def test_a_store_that_does_not_exist_lists_nothing_and_is_not_created(tmp_path: Path):
    assert finished_runs(f"sqlite:///{tmp_path}/nowhere/mlflow.db") == []
    assert not (tmp_path / "nowhere").exists()


def test_a_runs_file_is_downloaded_once_whole_then_served_from_the_cache(store: Store, monkeypatch):
    from samexp.app.runs import PER_IMAGE
    from samexp.tracking.finetuned import run_file

    first = run_file(store.run_id, PER_IMAGE, store.tracking_uri)
    assert first.name == "per_image.json" and first.parent.name == "metrics"
    assert [p.name for p in first.parent.iterdir()] == ["per_image.json"]  # no partial folder left

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(MlflowClient, "download_artifacts", no_network)
    assert run_file(store.run_id, PER_IMAGE, store.tracking_uri) == first
