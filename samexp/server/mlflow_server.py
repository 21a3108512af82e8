"""The MLflow tracking server over the PostgreSQL store, serving artifacts from a local folder: its
clients (every sweep worker) upload and download artifacts through it, so workers need no shared
filesystem, only the URL."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from samexp.errors import SamexpError
from samexp.server.procs import HOST, group_alive, stop_group, wait_until


def command(backend_uri: str, artifacts: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", str(artifacts),
        "--host", HOST, "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def start(
    backend_uri: str, artifacts: Path, port: int, workers: int, log: Path, timeout_s: float
) -> int:
    """Start the server in its own process group (its uvicorn workers go with it on stop) and
    wait until /health answers; the first start also creates MLflow's tables. Returns its pid."""
    artifacts.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command(backend_uri, artifacts, port, workers),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: stop() ends the workers too; Ctrl-C skips it
        )
    try:
        wait_until(
            lambda: healthy(port) or process.poll() is not None,
            timeout_s,
            f"MLflow server answering on http://{HOST}:{port}",
        )
    except SamexpError:
        stop_group(process.pid, timeout_s=10)
        raise SamexpError(
            f"MLflow server did not answer on http://{HOST}:{port} within {timeout_s:g} s: "
            f"{_tail(log)} (log: {log})"
        ) from None
    if process.poll() is not None:
        raise SamexpError(f"MLflow server exited ({process.returncode}): {_tail(log)} (log: {log})")
    return process.pid


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
