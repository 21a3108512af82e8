"""Start, stop and report the pair. What runs is recorded in `<data>/server.json`, so `stop` and
`status` need only the data folder, from any shell.

Data folder layout: `postgres/` (the cluster: MLflow's and Optuna's databases), `artifacts/`
(every run's files, served by MLflow), `postgres.log`, `mlflow.log`, `server.json`, and the
secrets, each 0600 (samexp/server/secrets.py): `credentials.pgpass` (what workers need),
`admin.pgpass`, `mlflow-auth.ini` and MLflow's user database `mlflow-auth.db`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.config.paths import samexp_home
from samexp.server import mlflow_server, postgres, secrets
from samexp.server.procs import HOST, require_free
from samexp.tracking.names import PORT

try:
    import fcntl
except ImportError:  # Windows: PostgreSQL's Debian binaries are not there either
    fcntl = None

log = logging.getLogger(__name__)

PG_PORT = 5433  # not 5432: a distribution's own PostgreSQL (installing it may start one) is there
MLFLOW_PORT = PORT  # MLflow's own default (`make ui` uses it too: stop one to run the other)
DATABASES = ("mlflow", "optuna")
TIMEOUT_S = 120.0  # MLflow's first start creates its tables: seconds, not minutes
STATE = "server.json"
START_LOCK = ".start.lock"  # held by the `start` in progress: a second one waits for it


def default_data() -> Path:
    """Beside the embedded stores, under the runs root (samexp/config/paths.py), which git ignores."""
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

    @property
    def credentials(self) -> Path:
        """The worker role's pgpass line; its user and password log in to MLflow too."""
        return Path(self.data) / secrets.CREDENTIALS_FILE

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
    this folder is left as is and returned; anything half-started is stopped on failure. Two
    starts at once on one folder: the second waits for the first and finds the pair running."""
    data = (data or default_data()).expanduser().resolve()
    if workers < 1:
        raise SamexpError(f"--workers={workers}: the MLflow server needs at least 1")
    postgres.bin_dir(), postgres.as_server_user()  # installed, and runnable here: before any file
    with _writable(data), _start_lock(data, timeout_s):
        old = _read(data)
        if old is not None and all(old.running()):
            log.info("already running from %s (ports %d, %d)", data, old.pg_port, old.mlflow_port)
            return old
        if old is not None:  # half up (one crashed): start clean
            stop(data, timeout_s=timeout_s)
        _refuse_passwordless(data)
        require_free(pg_port, "PostgreSQL", "--pg-port")
        require_free(mlflow_port, "the MLflow server", "--mlflow-port")
        return _start(Server(str(data), pg_port, mlflow_port), workers, timeout_s)


def _start(server: Server, workers: int, timeout_s: float) -> Server:
    data = Path(server.data)
    _write(server)  # before anything starts: `stop` then finds whatever did
    pg_log, mlflow_log = data / "postgres.log", data / "mlflow.log"
    admin = _secret(data / secrets.ADMIN_FILE, postgres.ADMIN, "the cluster superuser (samexp.server only)")  # fmt: skip
    worker = _secret(server.credentials, postgres.WORKER, _CREDENTIALS_NOTE)
    pg_port, mlflow_port = server.pg_port, server.mlflow_port
    try:
        postgres.init(server.cluster, pg_log, admin)
        server.pg_pid = postgres.start(server.cluster, pg_log, pg_port, timeout_s)
        postgres.provision(pg_port, admin, worker, DATABASES)
        _create_optuna_tables(server.storage, worker)
        auth = data / secrets.MLFLOW_AUTH_FILE
        if not auth.is_file():  # its admin password is used once, when the auth database is new
            secrets.write_private(auth, mlflow_server.auth_config(secrets.generate(), data / "mlflow-auth.db"))  # fmt: skip
        server.mlflow_pid = mlflow_server.start(
            postgres.url(pg_port, "mlflow"), data / "artifacts", mlflow_port, workers,
            mlflow_log, timeout_s, auth, server.credentials,
        )  # fmt: skip
        mlflow_server.ensure_user(mlflow_port, _mlflow_admin_password(auth), postgres.WORKER, worker)  # fmt: skip
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


_CREDENTIALS_NOTE = (
    "samexp team server credentials, PostgreSQL's pgpass format: the same user and password log "
    "in to MLflow. Keep it 0600; a worker uses it as PGPASSFILE (docs: Scale out)"
)


def _secret(path: Path, user: str, note: str) -> str:
    """The password kept in `path`, generated and written 0600 the first time."""
    password = secrets.read_pgpass(path, user)
    if password is None:
        password = secrets.generate()
        secrets.write_pgpass(path, user, password, note)
    secrets.require_private(path)
    return password


def _mlflow_admin_password(auth: Path) -> str:
    import configparser

    config = configparser.ConfigParser()
    config.read(auth)
    return config["mlflow"]["admin_password"]


def _refuse_passwordless(data: Path) -> None:
    """A cluster made by samexp before passwords (trust for every local account, `samexp` its
    superuser) is never started again: there is no safe way to take that role's power back."""
    if postgres.exists(data / "postgres") and not (data / secrets.ADMIN_FILE).is_file():
        raise SamexpError(
            f"{data} was created by an older samexp whose PostgreSQL let every local account in "
            "as superuser, without a password: it is not started again. Start a new server in "
            "another --data folder (docs: Scale out, 'Upgrading a server folder')"
        )


@contextlib.contextmanager
def _writable(data: Path) -> Iterator[None]:
    """Turn a data folder that cannot be created or written (read-only, another account's) into
    one line naming it."""
    try:
        data.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise
        raise SamexpError(
            f"cannot write the server's data folder {data} ({e.strerror}): choose a folder "
            "you may write with --data"
        ) from None


@contextlib.contextmanager
def _start_lock(data: Path, timeout_s: float) -> Iterator[None]:
    """One `start` at a time per data folder; the kernel drops the lock when its holder dies."""
    if fcntl is None:
        yield
        return
    with open(data / START_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another server start is starting the servers of %s: waiting for it", data)
            deadline = time.monotonic() + 2 * timeout_s  # its two servers, each up to timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SamexpError(
                            f"another `python -m samexp.server start` has been starting the "
                            f"servers of {data} for {2 * timeout_s:g} s: is it stuck? "
                            "(`python -m samexp.server stop` ends what it started)"
                        ) from None
                    time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _create_optuna_tables(storage: str, password: str) -> None:
    """Optuna creates its tables on first use, and two workers doing so at once on an empty
    database collide (duplicate CREATE TABLE): the server makes them before any worker comes.
    As the worker role, so the tables are its own."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = {"connect_args": {"password": password}}
        optuna.storages.RDBStorage(storage, engine_kwargs=engine).engine.dispose()


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
