"""A sweep's MLflow parent run in a fresh store, as the sweep callback exports it to its jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from samexp.tracking.names import PARENT_ENV, URI_ENV


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> tuple[MlflowClient, str, str]:
    """An MLflow store with a sweep's parent run, exported as samexp's sweep callback does."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("samexp", artifact_location=tmp_path.as_uri())
    parent = client.create_run(experiment, run_name="study").info.run_id
    monkeypatch.setenv(PARENT_ENV, parent)
    monkeypatch.setenv(URI_ENV, uri)
    return client, experiment, parent
