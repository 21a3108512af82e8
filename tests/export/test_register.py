"""`python -m samexp.export register=<name>`: a run's model as an MLflow model (the ONNX export
inside, answered by `samexp.predict.serving`), registered in the Model Registry, loaded back by
`models:/<name>/<version>` and served over HTTP by `mlflow models serve`.

Runs here are made by hand in a store of the test's own (the session's tiny runs' weights logged
to them, with the metrics a study would compare), so registering never touches the shared runs.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from samexp.config.errors import SamexpError
from samexp.data.base import read_image_rgb
from samexp.export import export
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.onnx_predictor import OnnxPredictor
from samexp.predict.prompted import predict_prompts
from samexp.predict.prompts import parse_prompts
from samexp.predict.serving import decode_mask
from samexp.tracking.finished_runs import PER_IMAGE
from samexp.tracking.names import REGISTERED, STATE
from tests.conftest import REPO

EXPERIMENT = "ring-study"


def make_run(uri: str, artifacts: Path, weights: Path, metrics: dict[str, float],
             finished: bool = True) -> str:  # fmt: skip
    """A run as the runner leaves one: weights, per-image figures, metrics, FINISHED/COMPLETE."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment = found.experiment_id if found else client.create_experiment(
        EXPERIMENT, artifact_location=artifacts.as_uri())  # fmt: skip
    run = client.create_run(experiment, tags={STATE: "COMPLETE" if finished else "RUNNING"})
    run_id = run.info.run_id
    client.log_artifact(run_id, str(weights), "weights")
    client.log_artifact(run_id, str(weights.with_suffix(".json")), "weights")
    folder, name = PER_IMAGE.rsplit("/", 1)
    rows = artifacts.parent / run_id / name
    rows.parent.mkdir(parents=True)
    rows.write_text(json.dumps([{"name": "ring", "instance": 0, "final_iou": 0.5}]))
    client.log_artifact(run_id, str(rows), folder)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    if finished:
        client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path]:
    return f"sqlite:///{tmp_path}/mlruns/mlflow.db", tmp_path / "mlruns" / "artifacts"


def photo_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def rings_image(rings_root: Path) -> Path:
    return sorted((rings_root / "test" / "images").iterdir())[0]


@pytest.mark.parametrize("which", ["tiny_lora_run", "tiny_sam2_run"])
def test_the_registered_model_answers_as_the_onnx_predictor_does(
    which, request, store, rings_root, tmp_path
):
    import mlflow

    trained = request.getfixturevalue(which)
    uri, artifacts = store
    run_id = make_run(uri, artifacts, trained.weights, {"final/test/iou": 0.5})
    assert export(register="rings", run_id=run_id, tracking_uri=uri) == 1
    assert MlflowClient(uri).get_run(run_id).data.tags[REGISTERED] == "rings:1"

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/rings/1")
    photo = rings_image(rings_root)
    box, points = [300.0, 300.0, 700.0, 700.0], [[500.0, 500.0], [100.0, 100.0]]
    answer = model.predict([{"image": photo_b64(photo), "box": box, "points": points,
                             "labels": [1, 0], "multimask": True}])  # fmt: skip
    row = answer.iloc[0]
    assert pd.isna(row["error"]) and (row["width"], row["height"]) == (1024, 1024)

    folder = export(weights=str(trained.weights), format="onnx", out=str(tmp_path / "onnx"))
    image = read_image_rgb(photo, orient=True)
    expected = predict_prompts(OnnxPredictor(OnnxModel(folder)), image,
                               parse_prompts(box=box, points=points, labels=[1, 0]), True)  # fmt: skip
    masks = np.stack([decode_mask(m) for m in row["masks"]])
    assert masks.shape == (3, 1024, 1024)
    assert np.array_equal(masks, expected.masks[0])
    np.testing.assert_allclose(row["scores"], expected.scores[0], atol=1e-6)


def test_best_of_an_experiment_registers_its_best_finished_run(store, tiny_lora_run):
    uri, artifacts = store
    runs = {iou: make_run(uri, artifacts, tiny_lora_run.weights, {"final/test/iou": iou})
            for iou in (0.31, 0.52, 0.44)}  # fmt: skip
    make_run(uri, artifacts, tiny_lora_run.weights, {"final/test/iou": 0.9}, finished=False)
    assert export(register="best-rings", best_of=EXPERIMENT, tracking_uri=uri) == 1
    assert MlflowClient(uri).get_model_version("best-rings", "1").run_id == runs[0.52]
    with pytest.raises(SamexpError, match="metric=test/nope"):
        export(register="best-rings", best_of=EXPERIMENT, metric="test/nope", tracking_uri=uri)
    with pytest.raises(SamexpError, match="'no-such-study' is no parent run"):
        export(register="x", best_of="no-such-study", tracking_uri=uri)


def test_register_needs_a_run(tiny_lora_run):
    with pytest.raises(SamexpError, match="register=x logs the model to a run"):
        export(register="x", weights=str(tiny_lora_run.weights))


@pytest.fixture(scope="module")
def served_model(tiny_lora_run, tmp_path_factory) -> tuple[str, Path]:
    """The tiny LoRA run's model registered as `rings-served` version 1 in a store of its own."""
    home = tmp_path_factory.mktemp("served")
    uri, artifacts = f"sqlite:///{home}/mlruns/mlflow.db", home / "mlruns" / "artifacts"
    run_id = make_run(uri, artifacts, tiny_lora_run.weights, {"final/test/iou": 0.5})
    export(register="rings-served", run_id=run_id, tracking_uri=uri)
    return uri, home


def test_a_bad_row_is_answered_with_samexps_one_line_reason_and_the_others_still_are(
    served_model, rings_root
):
    import mlflow

    mlflow.set_tracking_uri(served_model[0])
    model = mlflow.pyfunc.load_model("models:/rings-served/1")
    photo = photo_b64(rings_image(rings_root))
    answer = model.predict([
        {"image": "not base64!", "box": [1, 1, 5, 5]},
        {"image": photo, "box": [4000, 4000, 5000, 5000]},
        {"image": photo, "box": [300, 300, 700, 700]},
        {"image": photo, "points": [[10, 10]], "labels": [2]},
    ])  # fmt: skip
    errors = list(answer["error"])
    assert errors[0].startswith("row 0: image is not base64 text")
    assert errors[1].startswith("row 1: box=[4000, 4000, 5000, 5000] lies outside the image, "
                                "which is 1024×1024")  # fmt: skip
    assert pd.isna(errors[2]) and len(answer["masks"][2]) == 1
    assert errors[3] == "row 3: labels[0]=2: labels are 1 (foreground) or 0 (background)"
    assert all("\n" not in e for e in errors[:2] + errors[3:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_an_http_request_with_the_models_masks(
    served_model, rings_root
):
    import mlflow

    uri, home = served_model
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # mlflow and uvicorn of this environment
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    log_file = home / "serve.log"
    with open(log_file, "wb") as out:
        server = subprocess.Popen(
            [f"{bin_dir}/mlflow", "models", "serve", "-m", "models:/rings-served/1",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer /ping:\n{log_file.read_text()[-3000:]}")
                time.sleep(0.5)
        row = {"image": photo_b64(rings_image(rings_root)), "box": [300, 300, 700, 700]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": [row]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())["predictions"][0]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    assert answer["error"] is None and (answer["width"], answer["height"]) == (1024, 1024)
    mlflow.set_tracking_uri(uri)
    local = mlflow.pyfunc.load_model("models:/rings-served/1").predict([row]).iloc[0]
    assert [decode_mask(m).shape for m in answer["masks"]] == [(1024, 1024)]
    assert np.array_equal(decode_mask(answer["masks"][0]), decode_mask(local["masks"][0]))
    assert answer["scores"] == pytest.approx(list(local["scores"]), abs=1e-6)


@pytest.mark.slow
def test_a_run_whose_model_cannot_be_registered_still_finishes_and_says_why(
    rings_root, tmp_path, monkeypatch
):
    from samexp.export import mlflow_model
    from samexp.tracking.names import MODEL_ERROR
    from tests.conftest import train_tiny

    def fails(*args, **kwargs):
        raise SamexpError("the registry is down")

    monkeypatch.setattr(mlflow_model, "ship", fails)
    done = train_tiny(tmp_path, "adapter=decoder", "trainer.val_fraction=0",
                      "tracking.register=rings")  # fmt: skip
    run = MlflowClient(done.tracking_uri).get_run(done.run_id)
    assert run.info.status == "FINISHED" and (tmp_path / "out" / "adapter.safetensors").is_file()
    assert run.data.tags[MODEL_ERROR] == "SamexpError: the registry is down"
    assert REGISTERED not in run.data.tags
