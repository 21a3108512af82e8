"""`python -m samexp.server start|stop|status [--data DIR] [--pg-port N] [--mlflow-port N]`:
user errors print one line, no traceback (exit 2); `status` exits 3 when the pair is not up."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from samexp.config.console import command_output
from samexp.config.errors import SamexpError
from samexp.server import client, control, postgres
from samexp.tracking.names import PASSWORD_ENV, USERNAME_ENV

log = logging.getLogger("samexp.server")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m samexp.server",
        description="PostgreSQL + MLflow tracking server on 127.0.0.1 for sweeps across machines "
        "(README: Scale out).",
    )
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--data", type=Path, default=None,
                   help=f"data folder (default: {control.default_data()})")  # fmt: skip
    p.add_argument("--pg-port", type=int, default=control.PG_PORT)
    p.add_argument("--mlflow-port", type=int, default=control.MLFLOW_PORT)
    p.add_argument("--workers", type=int, default=4, help="MLflow server worker processes")
    p.add_argument("--timeout", type=float, default=control.TIMEOUT_S,
                   help="seconds to wait for each server to come up or go down")  # fmt: skip
    return p


def report(server: control.Server | None, data: Path | None) -> int:
    where = server.data if server else (data or control.default_data())
    pg_up, mlflow_up = server.running() if server else (False, False)
    if not (pg_up or mlflow_up):
        log.info("not running (data folder %s); start it with: make server", where)
        return 3
    state = {True: "running", False: "NOT running"}
    log.info("PostgreSQL  %s:%d  %s", control.HOST, server.pg_port, state[pg_up])
    log.info("MLflow      %s  %s", server.tracking_uri, state[mlflow_up])
    log.info("data        %s", server.data)
    found_here = server.credentials == client.credentials_file()
    log.info(
        "credentials %s (0600): PostgreSQL's pgpass format; its user %s and password log in to "
        f"MLflow too (browser, `{USERNAME_ENV}` / `{PASSWORD_ENV}`)\n"
        "  this machine: %s\n"
        "  a worker machine: copy the file there (`scp -p`, keep it 0600), `export PGPASSFILE=<the "
        "copy>`, and tunnel both ports: ssh -fN -L %d:%s:%d -L %d:%s:%d <this host>",
        server.credentials, postgres.WORKER,
        "samexp reads it by itself" if found_here else f"export PGPASSFILE={server.credentials}",
        server.mlflow_port, control.HOST, server.mlflow_port,
        server.pg_port, control.HOST, server.pg_port,
    )  # fmt: skip
    log.info("every sweep worker adds:\n  %s", server.overrides)
    return 0 if pg_up and mlflow_up else 3


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with command_output(log):
        try:
            return run(args)
        except SamexpError as e:
            log.error("samexp.server: %s", e)
            return 2
        except KeyboardInterrupt:
            log.error("samexp.server: interrupted; `python -m samexp.server stop` cleans up")
            return 130


def run(args: argparse.Namespace) -> int:
    if args.action == "start":
        server = control.start(args.data, args.pg_port, args.mlflow_port, args.workers, args.timeout)  # fmt: skip
        return report(server, args.data)
    if args.action == "stop":
        before = control.status(args.data)
        if before is None or not any(before.running()):
            log.info("no server to stop in %s", args.data or control.default_data())
        control.stop(args.data, args.timeout)  # also what a crashed one left behind
        return 0
    return report(control.status(args.data), args.data)


if __name__ == "__main__":
    sys.exit(main())
