"""Start, stop and report the pair. What runs is recorded in `<data>/server.json`, so `stop` and
`status` need only the data folder, from any shell.

Data folder layout: `postgres/` (the cluster: MLflow's and Optuna's databases), `artifacts/`
(every run's files, served by MLflow), `postgres.log`, `mlflow.log`, `server.json`.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from samexp.errors import SamexpError
from samexp.paths import samexp_home
from samexp.server import mlflow_server, postgres
from samexp.server.procs import HOST, require_free

log = logging.getLogger(__name__)

PG_PORT = 5433  # not 5432: a distribution's own PostgreSQL (installing it may start one) is there
MLFLOW_PORT = 5000  # MLflow's own default (`make ui` uses it too: stop one to run the other)
DATABASES = ("mlflow", "optuna")
TIMEOUT_S = 120.0  # MLflow's first start creates its tables: seconds, not minutes
STATE = "server.json"


def default_data() -> Path:
    """Beside the embedded stores, under the runs root (samexp/paths.py), which git ignores."""
    return samexp_home() / "mlruns" / "server"


@dataclass
class Server:
    data: str
    pg_port: int = PG_PORT
    mlflow_port: int = MLFLOW_PORT
    pg_pid: int = 0
    mlflow_pid: int = 0

    @property
    def tracking_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def storage(self) -> str:
        """The URL of Optuna's database: `hydra.sweeper.storage=` for every worker."""
        return postgres.url(self.pg_port, "optuna")

    @property
    def overrides(self) -> str:
        return f"tracking.tracking_uri={self.tracking_uri} hydra.sweeper.storage={self.storage}"

    @property
    def cluster(self) -> Path:
        return Path(self.data) / "postgres"

    def running(self) -> tuple[bool, bool]:
        """(PostgreSQL, MLflow) running."""
        return postgres.running(self.cluster), mlflow_server.running(self.mlflow_pid)


def start(
    data: Path | None = None,
    pg_port: int = PG_PORT,
    mlflow_port: int = MLFLOW_PORT,
    workers: int = 4,
    timeout_s: float = TIMEOUT_S,
) -> Server:
    """Start both (PostgreSQL first: MLflow's store lives in it). A pair already running from
    this folder is left as is and returned; anything half-started is stopped on failure."""
    data = (data or default_data()).expanduser().resolve()
    old = _read(data)
    if old is not None and all(old.running()):
        log.info("already running from %s (ports %d, %d)", data, old.pg_port, old.mlflow_port)
        return old
    if old is not None:  # half up (one crashed): start clean
        stop(data, timeout_s=timeout_s)
    server = Server(str(data), pg_port, mlflow_port)
    require_free(pg_port, "PostgreSQL", "--pg-port")
    require_free(mlflow_port, "the MLflow server", "--mlflow-port")
    if workers < 1:
        raise SamexpError(f"--workers={workers}: the MLflow server needs at least 1")
    postgres.bin_dir(), postgres.as_server_user()  # installed, and runnable here: before any file
    data.mkdir(parents=True, exist_ok=True)
    _write(server)  # before anything starts: `stop` then finds whatever did
    pg_log, mlflow_log = data / "postgres.log", data / "mlflow.log"
    try:
        postgres.init(server.cluster, pg_log)
        server.pg_pid = postgres.start(server.cluster, pg_log, pg_port, timeout_s)
        postgres.create_databases(pg_port, DATABASES)
        _create_optuna_tables(server.storage)
        server.mlflow_pid = mlflow_server.start(
            postgres.url(pg_port, "mlflow"), data / "artifacts", mlflow_port, workers,
            mlflow_log, timeout_s,
        )  # fmt: skip
        _write(server)
    except BaseException:
        try:
            stop(data, timeout_s=timeout_s)
        except SamexpError as e:  # the start's own error is the one to report
            log.warning("could not stop what had started: %s", e)
        raise
    log.info("PostgreSQL on %s:%d, MLflow on %s, data in %s", HOST, pg_port, server.tracking_uri, data)  # fmt: skip
    return server


def stop(data: Path | None = None, timeout_s: float = TIMEOUT_S) -> Server | None:
    """Stop both (MLflow first: it holds PostgreSQL connections); None when nothing was recorded."""
    data = (data or default_data()).expanduser().resolve()
    server = _read(data)
    if server is None:
        return None
    was_running = any(server.running())
    mlflow_server.stop(server.mlflow_pid, timeout_s)
    postgres.stop(server.cluster, timeout_s)
    server.pg_pid = server.mlflow_pid = 0
    _write(server)
    if was_running:
        log.info("stopped the servers of %s", data)
    return server


def status(data: Path | None = None) -> Server | None:
    """The recorded pair (None when never started from this folder)."""
    return _read((data or default_data()).expanduser().resolve())


def _create_optuna_tables(storage: str) -> None:
    """Optuna creates its tables on first use, and two workers doing so at once on an empty
    database collide (duplicate CREATE TABLE): the server makes them before any worker comes."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.RDBStorage(storage).engine.dispose()


def _read(data: Path) -> Server | None:
    try:
        return Server(**json.loads((data / STATE).read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise SamexpError(f"{data / STATE} is unreadable ({e}): stop the servers by hand") from None


def _write(server: Server) -> None:
    path = Path(server.data) / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(server), indent=2) + "\n")
    tmp.replace(path)
