"""`python -m samexp.server`: the team's PostgreSQL + MLflow pair, started and stopped by one
command, and two sweep workers sharing one Optuna study through it (standing for two machines)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from samexp.server import __main__ as cli
from samexp.server import client as server_client
from samexp.server import control, postgres, secrets
from samexp.server.procs import alive, group_alive, port_in_use
from tests.conftest import REPO, data_root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_busy_port_is_a_one_line_error_naming_it(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = cli.main(["start", "--data", str(tmp_path), "--pg-port", str(port),
                         "--mlflow-port", str(free_port())])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"port {port} on 127.0.0.1 is in use" in err and "--pg-port" in err
    assert not (tmp_path / "postgres").exists(), "nothing is set up before the ports are checked"


def test_missing_postgresql_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(postgres, "DEBIAN_BINS", str(tmp_path / "none" / "*" / "bin"))
    code = cli.main(["start", "--data", str(tmp_path / "server"), "--pg-port", str(free_port()),
                     "--mlflow-port", str(free_port())])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "apt-get install postgresql" in err and "make server" in err


def test_status_and_stop_of_a_folder_never_started_say_so(tmp_path, capsys):
    assert cli.main(["status", "--data", str(tmp_path)]) == 3
    assert "not running" in capsys.readouterr().out
    assert cli.main(["stop", "--data", str(tmp_path)]) == 0
    assert "no server to stop" in capsys.readouterr().out


@pytest.fixture
def server_data():
    """A data folder the `postgres` user can enter when the tests run as root (pytest's tmp_path
    sits in a folder only root may enter); the pair is stopped whatever the test did."""
    data = Path(tempfile.mkdtemp(prefix="samexp-server-"))
    data.chmod(0o755)
    yield data
    try:
        control.stop(data, timeout_s=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def server_cli(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "samexp.server", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def sweep_worker(tmp_path: Path, server: control.Server, name: str, seed: int) -> subprocess.Popen:
    """One sweep process of the study, as another machine would start it: the two override
    lines of `status`, its own sampler seed and sweep folder."""
    args = [
        sys.executable, "-m", "samexp", "-m", "experiment=smoke", "trainer.epochs=1",
        "hparams_search=lora_rank_lr", "hydra.sweeper.n_trials=4", "hydra/sweeper/pruner=nop",
        "hydra.sweeper.study_name=team", "hydra.sweeper.heartbeat_interval=1",
        f"hydra.sweeper.sampler.seed={seed}", f"data_root={data_root()}",
        *server.overrides.split(), f"hydra.sweep.dir={tmp_path}/multirun/{name}",
    ]  # fmt: skip
    # one thread each: two torch processes on two cores
    env = {**os.environ, "SAMEXP_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "SAMEXP_HOME": str(tmp_path), "PGPASSFILE": str(server.credentials)}  # fmt: skip
    env.pop("SAMEXP_PARENT_RUN_ID", None)
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def as_nobody(*command: str) -> subprocess.CompletedProcess:
    """Another OS account on this machine, with the system's tools (it may not enter /root)."""
    return subprocess.run(["runuser", "-u", "nobody", "--", *command], capture_output=True,
                          text=True, timeout=60, cwd="/")  # fmt: skip


MLFLOW_AS_NOBODY = """
import json, sys, urllib.error, urllib.request
for method, path, body in (("GET", "experiments/search?max_results=5", None),
                           ("POST", "experiments/create", {"name": "intruder"})):
    request = urllib.request.Request(f"{sys.argv[1]}/api/2.0/mlflow/{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
        print(method, 200)
    except urllib.error.HTTPError as e:
        print(method, e.code)
"""


def check_another_account_gets_nothing(server: control.Server) -> None:
    """What a local account without the credentials file reaches: nothing."""
    psql = shutil.which("psql")
    if os.geteuid() != 0 or psql is None or shutil.which("runuser") is None:
        return  # needs root (to be someone else) and PostgreSQL's client
    for user, db in ((postgres.WORKER, "optuna"), (postgres.ADMIN, "postgres")):
        denied = as_nobody(psql, "-h", "127.0.0.1", "-p", str(server.pg_port), "-U", user, "-d", db, "-w", "-c", "SELECT 1")  # fmt: skip
        assert denied.returncode == 2 and "no password supplied" in denied.stderr, denied.stderr
    guessed = as_nobody("env", "PGPASSWORD=samexp", psql, "-h", "127.0.0.1", "-p", str(server.pg_port), "-U", postgres.WORKER, "-d", "optuna", "-c", "SELECT 1")  # fmt: skip
    assert "password authentication failed" in guessed.stderr, guessed.stderr
    for name in (secrets.CREDENTIALS_FILE, secrets.ADMIN_FILE, secrets.MLFLOW_AUTH_FILE):
        assert (Path(server.data) / name).stat().st_mode & 0o777 == 0o600
        assert as_nobody("cat", str(Path(server.data) / name)).returncode != 0
    mlflow = as_nobody("python3", "-c", MLFLOW_AS_NOBODY, server.tracking_uri)
    assert mlflow.stdout.split() == ["GET", "401", "POST", "401"], mlflow.stdout + mlflow.stderr
    # and the worker role itself, with the password, is no superuser: no program runs as postgres
    env = {**os.environ, "PGPASSFILE": str(server.credentials)}
    copy = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(server.pg_port), "-U", postgres.WORKER, "-d", "optuna", "-w", "-c", "COPY (SELECT 1) TO PROGRAM 'id'"], capture_output=True, text=True, env=env)  # fmt: skip
    assert "must be superuser or have privileges of the pg_execute_server_program role" in copy.stderr, copy.stderr  # fmt: skip


def start_twice_at_once(*args: str) -> list[str]:
    """Two `start`s racing on one fresh folder: both end 0, without a traceback; one started."""
    starts = [subprocess.Popen([sys.executable, "-m", "samexp.server", "start", *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=200)[0] for p in starts]
    assert [p.returncode for p in starts] == [0, 0], outputs
    assert not any("Traceback" in out for out in outputs), outputs
    assert sum("waiting for it" in out and "already running" in out for out in outputs) == 1, outputs  # fmt: skip
    return outputs


def check_the_best_run_registers_and_loads_back_by_name(server: control.Server, tmp_path: Path):
    """The study's best run, registered in the team server's Model Registry by the study's name,
    answers a request once loaded back by its models:/ URI (the model's files go through the
    server too)."""
    import base64

    import mlflow

    from samexp.export import export
    from samexp.predict.serving import decode_mask

    version = export(register="team-best", best_of="team", tracking_uri=server.tracking_uri)
    mlflow.set_tracking_uri(server.tracking_uri)
    (tmp_path / "model").mkdir()
    model = mlflow.pyfunc.load_model(
        f"models:/team-best/{version}", dst_path=str(tmp_path / "model")
    )
    photo = data_root() / "rings" / "test" / "images" / "ring_test_1.jpg"
    row = model.predict([{"image": base64.b64encode(photo.read_bytes()).decode(),
                          "box": [300, 300, 700, 700]}]).iloc[0]  # fmt: skip
    assert decode_mask(row["masks"][0]).shape == (1024, 1024) and len(row["scores"]) == 1
    assert list((Path(server.data) / "artifacts").rglob("encoder.onnx"))  # kept by the server


@pytest.mark.server
@pytest.mark.slow
def test_two_sweep_workers_share_one_study_through_the_postgresql_and_mlflow_servers(
    tmp_path, server_data, monkeypatch
):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from safetensors import safe_open

    from hydra_plugins.samexp_optuna_sweeper.workers import WORKER

    pg_port, mlflow_port = free_port(), free_port()
    started = time.monotonic()
    start_twice_at_once("--data", str(server_data), "--pg-port", str(pg_port),
                        "--mlflow-port", str(mlflow_port), "--workers", "1", "--timeout", "90")  # fmt: skip
    server = control.status(server_data)
    assert server.running() == (True, True)
    check_another_account_gets_nothing(server)
    monkeypatch.setenv("PGPASSFILE", str(server.credentials))  # this test reads both stores too
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    server_client.use_credentials()
    assert server.storage == f"postgresql+psycopg://samexp@127.0.0.1:{pg_port}/optuna"
    assert server.tracking_uri == f"http://127.0.0.1:{mlflow_port}"
    up = time.monotonic() - started

    workers = {name: sweep_worker(tmp_path, server, name, seed) for name, seed in (("a", 1), ("b", 2))}  # fmt: skip
    try:
        for name, process in workers.items():
            code = process.wait(timeout=240)
            assert code == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    # the study in PostgreSQL: exactly 4 results, shared by both workers
    study = optuna.load_study(study_name="team", storage=server.storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    ran_on = {t.user_attrs[WORKER].rsplit(":", 1)[1] for t in study.trials}
    assert ran_on == {str(p.pid) for p in workers.values()}, "both workers ran trials"

    # MLflow through the server: one parent, four children, their files served by it
    client = MlflowClient(tracking_uri=server.tracking_uri)
    experiment = client.get_experiment_by_name("samexp")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    listing = [(r.info.run_name, r.info.start_time, r.info.status, r.data.tags.get("samexp.pid"),
                r.data.tags.get("mlflow.parentRunId")) for r in runs]  # fmt: skip
    assert len(parents) == 1 and len(children) == 4, listing
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    weights = client.download_artifacts(
        children[0].info.run_id, "weights/adapter.safetensors", str(tmp_path / "download")
    )
    with safe_open(weights, framework="pt") as f:
        assert any("lora" in key for key in f.keys())
    # uploaded through the server into its data folder, not written by the workers themselves
    assert len(list((server_data / "artifacts").rglob("adapter.safetensors"))) == 4
    check_the_best_run_registers_and_loads_back_by_name(server, tmp_path)

    server_cli("stop", "--data", str(server_data))
    assert not alive(server.pg_pid) and not group_alive(server.mlflow_pid)
    assert not port_in_use(pg_port) and not port_in_use(mlflow_port)
    assert server.running() == (False, False)
    print(f"servers up in {up:.1f} s; whole test {time.monotonic() - started:.1f} s")
