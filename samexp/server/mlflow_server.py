"""The MLflow tracking server over the PostgreSQL store, serving artifacts from a local folder: its
clients (every sweep worker) upload and download artifacts through it, so workers need no shared
filesystem, only the URL and the credentials.

It runs MLflow's own basic-auth app: every request but /health needs a user and password, and a
user reaches only the experiments it created or was granted (default permission: none).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.server import secrets
from samexp.server.procs import HOST, group_alive, stop_group, wait_until
from samexp.tracking.names import AUTH_CONFIG_ENV, REST_API, SERVER_SECRET_ENV

ADMIN = "admin"  # MLflow's admin: manages users; the server's own commands only
# `mlflow server` / `mlflow ui` import starlette.middleware.wsgi, which warns on every worker
# start; only that warning, only in the server's processes
QUIET = "ignore:starlette.middleware.wsgi is deprecated:UserWarning:mlflow.server.fastapi_app"


def environment(**extra: str) -> dict[str, str]:
    """The environment of an MLflow server process: this one's, without Starlette's notice."""
    warnings = os.environ.get("PYTHONWARNINGS")
    return {**os.environ, "PYTHONWARNINGS": f"{warnings},{QUIET}" if warnings else QUIET, **extra}


def auth_config(admin_password: str, database: Path) -> str:
    """The basic-auth app's ini (its path in AUTH_CONFIG_ENV): a generated admin password, its own
    user database, and no permission for a user on what it neither created nor was granted."""
    return (
        "# written by samexp.server: MLflow's basic-auth app (keep it 0600, it holds a password)\n"
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{database}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def command(backend_uri: str, artifacts: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--app-name", "basic-auth",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts),
        "--host", HOST, "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def start(
    backend_uri: str,
    artifacts: Path,
    port: int,
    workers: int,
    log: Path,
    timeout_s: float,
    auth_config_path: Path,
    pgpass: Path,
) -> int:
    """Start the server in its own process group (its uvicorn workers go with it on stop) and
    wait until /health answers; the first start also creates MLflow's tables. Returns its pid.
    Its files (artifacts, the auth database) are created owner-only (umask 077); libpq reads
    its PostgreSQL password from `pgpass`."""
    artifacts.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = environment(**{
        AUTH_CONFIG_ENV: str(auth_config_path),
        "PGPASSFILE": str(pgpass),
        # CSRF key of the sign-up page, the same in every worker; new at each start
        SERVER_SECRET_ENV: secrets.generate(),
    })  # fmt: skip
    return launch(command(backend_uri, artifacts, port, workers), env, log, port, timeout_s,
                  "MLflow server", umask=0o077).pid  # fmt: skip


def launch(
    args: list[str], env: dict[str, str], log: Path, port: int, timeout_s: float, what: str,
    umask: int = -1,
) -> subprocess.Popen:  # fmt: skip
    """Start an MLflow process (`mlflow server`, `mlflow ui`) in its own process group (its
    uvicorn workers go with it on stop; Ctrl-C in the terminal skips it), its output in `log`,
    and wait until /health answers; one that exits first or answers too late is stopped and
    said in one line with the log's last lines."""
    with open(log, "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, umask=umask,
                                   start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: healthy(port) or process.poll() is not None, timeout_s,
                   f"{what} answering on http://{HOST}:{port}")  # fmt: skip
    except SamexpError:
        stop_group(process.pid, timeout_s=10)
        raise SamexpError(
            f"{what} did not answer on http://{HOST}:{port} within {timeout_s:g} s: "
            f"{_tail(log)} (log: {log})"
        ) from None
    except BaseException:  # Ctrl-C while it starts: it goes with us
        stop_group(process.pid, timeout_s=10)
        raise
    if process.poll() is not None:
        raise SamexpError(f"{what} exited ({process.returncode}): {_tail(log)} (log: {log})")
    return process


def ensure_user(port: int, admin_password: str, user: str, password: str) -> None:
    """The workers' MLflow user, created on the first start or its password set to `password`
    (the credentials file is the truth), through the auth app's REST API as its admin."""
    try:
        _call(port, "GET", f"users/get?username={user}", admin_password)
        _call(port, "PATCH", "users/update-password", admin_password,
              {"username": user, "password": password})  # fmt: skip
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise SamexpError(f"MLflow server on port {port}: cannot set up user {user}: {e}") from None  # fmt: skip
        _call(port, "POST", "users/create", admin_password, {"username": user, "password": password})  # fmt: skip


def _call(port: int, method: str, path: str, admin_password: str, body: dict | None = None) -> None:
    token = base64.b64encode(f"{ADMIN}:{admin_password}".encode()).decode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}/{REST_API}/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def running(pid: int | None) -> bool:
    """The server started as `pid` (its group) still runs."""
    return bool(pid) and group_alive(pid, running="mlflow")


def stop(pid: int | None, timeout_s: float) -> None:
    if running(pid):
        stop_group(pid, timeout_s)
