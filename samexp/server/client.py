"""How a client of the team server (a run, a sweep worker) finds its credentials without any URL
carrying them: libpq reads the PostgreSQL password from `$PGPASSFILE`, MLflow's client reads
`MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`. When those are not set, they are taken
from the server's credentials file: `$PGPASSFILE` if set, else the default server's on this
machine (`<root>/mlruns/server/credentials.pgpass`, root as in samexp.config.paths).
"""

from __future__ import annotations

import os
from pathlib import Path

from samexp.server import postgres, secrets
from samexp.server.control import default_data
from samexp.tracking.names import PASSWORD_ENV, USERNAME_ENV

PGPASSFILE = "PGPASSFILE"


def credentials_file() -> Path | None:
    """`$PGPASSFILE` when set, else the default server's credentials file when there is one."""
    if os.environ.get(PGPASSFILE):
        return Path(os.environ[PGPASSFILE]).expanduser()
    default = default_data() / secrets.CREDENTIALS_FILE
    return default if default.is_file() else None


def use_credentials() -> None:
    """Point libpq at the credentials file and give MLflow's client its user and password, each
    only where the environment does not already say (what is set there wins); a no-op without a
    credentials file. Set in the environment, they reach every process a sweep starts."""
    path = credentials_file()
    if path is None:
        return
    if path.is_file():
        secrets.require_private(path)  # libpq would skip it silently, failing the password
    os.environ.setdefault(PGPASSFILE, str(path))
    if os.environ.get(USERNAME_ENV) or os.environ.get(PASSWORD_ENV):
        return
    password = secrets.read_pgpass(path, postgres.WORKER)
    if password is not None:
        os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV] = postgres.WORKER, password
