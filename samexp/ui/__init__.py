"""`python -m samexp.ui` (`make ui`): MLflow's UI over the embedded store, saying when it is ready.

`mlflow ui` prints nothing useful while it starts (tens of seconds on a small CPU) and then
Starlette's deprecation notices; here its output goes to `<store folder>/ui.log`, and one line
gives the address once /health answers: a link that opens on training runs, not on MLflow 3's
GenAI pages (its sidebar switch, which the `workflowType` parameter sets).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.config.paths import default_tracking_uri
from samexp.server import mlflow_server
from samexp.server.procs import HOST, require_free, stop_group
from samexp.tracking.names import EXPERIMENT, PORT, REST_API
from samexp.tracking.store_lock import sqlite_path

log = logging.getLogger("samexp.ui")

TIMEOUT_S = 180.0  # 34 s measured on 2 cores with 4 workers; one worker starts sooner
ML = "workflowType=machine_learning"  # MLflow 3.17's UI picks runs or GenAI pages by this


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m samexp.ui", description=__doc__.splitlines()[0])
    p.add_argument("--backend-store-uri", default=None,
                   help=f"the store to browse (default: {default_tracking_uri()})")  # fmt: skip
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--experiment", default=EXPERIMENT, help="the experiment the link opens")
    p.add_argument("--workers", type=int, default=1, help="server processes (one is plenty for one person)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for it to answer")  # fmt: skip
    return p


def command(store: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store,
            "--host", HOST, "--port", str(port), "--workers", str(workers)]  # fmt: skip


def link(port: int, experiment: str) -> str:
    """The experiment's training runs, or the experiment list while it does not exist yet."""
    base = f"http://{HOST}:{port}/"
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urllib.request.urlopen(f"{base}{REST_API}/experiments/get-by-name?{query}", timeout=10) as answer:  # fmt: skip
            found = json.load(answer)["experiment"]["experiment_id"]
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return f"{base}#/experiments?{ML}"
    return f"{base}#/experiments/{found}/runs?{ML}"


def serve(
    store: str, port: int, workers: int, timeout_s: float, experiment: str = EXPERIMENT
) -> int:
    """Start the UI, say where once it answers, and run until it exits or Ctrl-C."""
    require_free(port, "MLflow's UI", "--port")
    db = sqlite_path(store)
    logfile = (db.parent if db else Path.cwd()) / "ui.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("starting MLflow's UI over %s (its output: %s)", store, logfile)
    process = None
    try:
        process = mlflow_server.launch(command(store, port, workers), mlflow_server.environment(),
                                       logfile, port, timeout_s, "MLflow's UI")  # fmt: skip
        log.info("MLflow UI ready in %.0f s: %s (Ctrl-C stops it)",
                 time.monotonic() - started, link(port, experiment))  # fmt: skip
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if process is not None and process.poll() is None:
            stop_group(process.pid, timeout_s=10)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return serve(args.backend_store_uri or default_tracking_uri(), args.port, args.workers,
                     args.timeout, args.experiment)  # fmt: skip
    except SamexpError as e:
        log.error("samexp.ui: %s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
