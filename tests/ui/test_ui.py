"""`python -m samexp.ui` (`make ui`): MLflow's UI, without Starlette's notices, saying when it is
ready; its link opens training runs (checked in Chromium by hand: MLflow 3.17 follows the link's
`workflowType`, not the experiment's `mlflow.experimentKind` tag)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from samexp import ui
from samexp.server import mlflow_server


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path, caplog):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = ui.main(["--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db", "--port", str(port)])  # fmt: skip
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(errors) == 1 and len(errors[0].splitlines()) == 1
    err = errors[0]
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err
    assert not (tmp_path / "ui.log").exists()


def test_the_link_opens_the_experiment_list_on_runs_while_no_server_answers():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert ui.link(port, "samexp") == f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning"  # fmt: skip


@pytest.mark.slow  # a fresh interpreter importing MLflow's server: seconds
def test_the_servers_environment_silences_starlettes_wsgi_notice_only():
    # the module `mlflow ui` and `mlflow server` import in every worker, which warns
    done = subprocess.run([sys.executable, "-c", "import mlflow.server.fastapi_app"],
                          capture_output=True, text=True, env=mlflow_server.environment())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "StarletteDeprecationWarning" not in done.stderr
    assert mlflow_server.environment()["PYTHONWARNINGS"].endswith(
        "ignore:starlette.middleware.wsgi is deprecated:UserWarning:mlflow.server.fastapi_app"
    )
