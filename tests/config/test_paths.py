"""Where runs go does not depend on the working folder: one root ($SAMEXP_HOME, else this
checkout) holds the MLflow store, the run and sweep folders and the default data root."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from samexp.config.paths import samexp_home
from tests.conftest import CONF_DIR, REPO


def _composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("folder", ["repo", "elsewhere"])
def test_a_checkout_writes_under_its_own_root_from_any_working_folder(
    folder, tmp_path, monkeypatch
):
    monkeypatch.delenv("SAMEXP_HOME", raising=False)
    monkeypatch.delenv("SAMEXP_DATA", raising=False)
    monkeypatch.chdir(REPO if folder == "repo" else tmp_path)
    cfg = _composed()
    assert samexp_home() == REPO
    assert cfg.tracking.tracking_uri == f"sqlite:///{REPO}/mlruns/mlflow.db"
    assert cfg.tracking.artifact_root == f"{REPO}/mlruns/artifacts"
    assert cfg.data_root == f"{REPO}/data"
    assert Path(cfg.hydra.run.dir).parent.parent == REPO / "outputs"
    assert Path(cfg.hydra.sweep.dir).parent.parent == REPO / "multirun"


def test_samexp_home_moves_every_run_output_together(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMEXP_HOME", str(tmp_path))
    cfg = _composed()
    assert cfg.tracking.tracking_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert cfg.tracking.artifact_root == f"{tmp_path}/mlruns/artifacts"
    assert Path(cfg.hydra.run.dir).parent.parent == tmp_path / "outputs"


def test_one_path_can_move_alone(tmp_path):
    cfg = _composed(f"paths.mlruns={tmp_path}/fast")
    assert cfg.tracking.tracking_uri == f"sqlite:///{tmp_path}/fast/mlflow.db"
    assert cfg.paths.outputs == f"{samexp_home()}/outputs"
