"""A PostgreSQL cluster of samexp's own in a data folder: initdb once, start on 127.0.0.1, create
the databases, stop. The binaries are the distribution's (Debian's `postgresql` package).

PostgreSQL refuses to run as root, so under root every server command runs as the unprivileged
`postgres` user the package creates, and the cluster folder is handed to it. The cluster listens
on 127.0.0.1 only, with no Unix socket, and every connection gives a password (scram-sha-256):
its superuser's for samexp.server's own commands, and the worker role's, which owns the tracking
databases and nothing else (no superuser: it cannot read files or run programs as `postgres`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.server import secrets
from samexp.server.procs import HOST

ADMIN = "samexp_admin"  # the cluster's superuser: creates the role and databases, nothing else
WORKER = "samexp"  # owns MLflow's and Optuna's databases: the user in every URL
SYSTEM_USER = "postgres"  # who runs the server when samexp runs as root
INSTALL = "`make server` installs it (as root), or `apt-get install postgresql`"
DEBIAN_BINS = "/usr/lib/postgresql/*/bin"  # Debian puts only client wrappers on PATH


def url(port: int, database: str) -> str:
    """SQLAlchemy URL with the psycopg (3) driver, for MLflow and Optuna alike."""
    return f"postgresql+psycopg://{WORKER}@{HOST}:{port}/{database}"


def bin_dir() -> Path:
    """The folder with initdb and pg_ctl: on PATH, else Debian's, newest version first."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    versions = glob.glob(DEBIAN_BINS)
    candidates += sorted(map(Path, versions), key=lambda p: _version(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise SamexpError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL}")


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def as_server_user() -> list[str]:
    """The command prefix that drops root for the server's commands; none for a normal user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise SamexpError(
            f"PostgreSQL cannot run as root and there is no '{SYSTEM_USER}' user to run it: "
            f"{INSTALL} (it creates the user), or start the server as a normal user"
        ) from None
    return ["runuser", "-u", SYSTEM_USER, "--"]


def hand_over(*paths: Path) -> None:
    """Under root, give the cluster's folder and log to the server user, and check it can reach
    them (every parent folder must let it in)."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(SYSTEM_USER)
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)
        if _run(["test", "-w", str(path)], check=False).returncode != 0:
            raise SamexpError(
                f"the '{SYSTEM_USER}' user (PostgreSQL runs as it, never as root) cannot write "
                f"{path}: choose a --data folder whose parent folders it may enter, e.g. "
                "/srv/samexp-server"
            )


def exists(cluster: Path) -> bool:
    return (cluster / "PG_VERSION").is_file()


def init(cluster: Path, log: Path, admin_password: str) -> None:
    """A new cluster in `cluster` (nothing when one is there): superuser ADMIN with
    `admin_password`, handed to initdb in a 0600 file that lives only while it runs."""
    if exists(cluster):
        return
    cluster.mkdir(parents=True, exist_ok=True)
    log.touch()
    hand_over(cluster, log)
    pwfile = cluster.parent / ".initdb-password"
    secrets.write_private(pwfile, admin_password + "\n")
    try:
        hand_over(pwfile)
        _run([str(bin_dir() / "initdb"), "-D", str(cluster), "-U", ADMIN, f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    with open(cluster / "postgresql.conf", "a") as conf:
        conf.write(
            "\ninclude_if_exists = 'samexp.conf'  # written by samexp.server at each start\n"
        )


def start(cluster: Path, log: Path, port: int, timeout_s: float) -> int:
    """Start the cluster on 127.0.0.1:port (no Unix socket), wait until it accepts connections;
    returns the postmaster's pid."""
    settings = (
        f"listen_addresses = '{HOST}'\nport = {port}\nunix_socket_directories = ''\n"
        "password_encryption = 'scram-sha-256'\n"
    )
    (cluster / "samexp.conf").write_text(settings)
    # rewritten at each start: whatever was edited there, these lines are the only access
    (cluster / "pg_hba.conf").write_text(
        "# written by samexp.server at each start: passwords only, from 127.0.0.1 only\n"
        f"host  mlflow,optuna  {WORKER}  {HOST}/32  scram-sha-256\n"
        f"host  all  {ADMIN}  {HOST}/32  scram-sha-256\n"
    )
    hand_over(cluster / "samexp.conf", cluster / "pg_hba.conf")
    done = _run([str(bin_dir() / "pg_ctl"), "start", "-D", str(cluster), "-l", str(log), "-w",
                 "-t", str(int(timeout_s))], check=False)  # fmt: skip
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        raise SamexpError(
            f"PostgreSQL did not start on {HOST}:{port} within {timeout_s:g} s: "
            + (" | ".join(tail) or done.stdout.strip() or "no log")
            + f" (full log: {log})"
        )
    return pid(cluster)


def pid(cluster: Path) -> int:
    """The running postmaster's pid (first line of postmaster.pid), 0 when none."""
    try:
        return int((cluster / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def running(cluster: Path) -> bool:
    if not exists(cluster):
        return False
    return _run([str(bin_dir() / "pg_ctl"), "status", "-D", str(cluster)], check=False).returncode == 0  # fmt: skip


def stop(cluster: Path, timeout_s: float) -> None:
    """Fast shutdown (open sessions are ended, committed data kept); nothing when not running."""
    if not running(cluster):
        return
    done = _run([str(bin_dir() / "pg_ctl"), "stop", "-D", str(cluster), "-m", "fast", "-w",
                 "-t", str(int(timeout_s))], check=False)  # fmt: skip
    if done.returncode != 0:
        raise SamexpError(f"PostgreSQL in {cluster} did not stop within {timeout_s:g} s: {done.stdout.strip()}")  # fmt: skip


def provision(
    port: int, admin_password: str, worker_password: str, databases: tuple[str, ...]
) -> None:
    """The WORKER role (created, or its password set to `worker_password`: the credentials file
    is the truth) and the databases it owns, created when missing (CREATE DATABASE has no IF NOT
    EXISTS)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=HOST, port=port, user=ADMIN, password=admin_password,
                         dbname="postgres", autocommit=True) as conn:  # fmt: skip
        role = sql.Identifier(WORKER)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        conn.execute(
            sql.SQL(
                "ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                "PASSWORD {}"
            ).format(role, sql.Literal(worker_password))
        )
        have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in databases:
            if name not in have:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), role))  # fmt: skip


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    # cwd "/": the server user may not enter the caller's folder (root's home, a test's tmp)
    done = subprocess.run([*as_server_user(), *args], cwd="/", capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    done.stdout = (done.stdout or "") + (done.stderr or "")
    if check and done.returncode != 0:
        raise SamexpError(f"{Path(args[0]).name} failed: {done.stdout.strip().splitlines()[-1:]}")
    return done
