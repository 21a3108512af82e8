"""The team server's secrets: generated at its first start and kept 0600 beside its data, so no
other local account reads them and no URL carries them.

PostgreSQL's passwords are kept in its own pgpass format (`host:port:database:user:password`),
which libpq, and so psycopg under MLflow and Optuna, reads by itself from `$PGPASSFILE`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from samexp.config.atomic import atomic_path
from samexp.config.errors import SamexpError
from samexp.server.procs import HOST

PRIVATE = 0o600
ADMIN_FILE = "admin.pgpass"  # the cluster superuser: samexp.server's own commands only
CREDENTIALS_FILE = "credentials.pgpass"  # the worker role: the one file a worker needs
MLFLOW_AUTH_FILE = "mlflow-auth.ini"  # MLflow's basic-auth app: its admin and its user database


def generate() -> str:
    """A fresh password: 32 URL-safe characters (none that pgpass or an ini file would need
    escaped)."""
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner only, whatever the umask: the temporary file is
    created 0600 before a byte is written, so it is never readable by others, not even
    half-written."""
    with atomic_path(path, mode=PRIVATE) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), PRIVATE)
            out.write(text)


def write_pgpass(path: Path, user: str, password: str, note: str) -> None:
    """One pgpass line for `user` on this machine's 127.0.0.1, any port (a worker's SSH tunnel
    may use another one) and any database; `note` heads the file as a comment."""
    write_private(path, f"# {note}\n{HOST}:*:*:{user}:{password}\n")


def read_pgpass(path: Path, user: str) -> str | None:
    """The password of `user`'s first line in a pgpass file, None when it has none."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SamexpError(f"cannot read the credentials file {path}: {e.strerror}") from None
    for line in lines:
        fields = line.split(":")
        if not line.startswith("#") and len(fields) == 5 and fields[3] == user:
            return fields[4]
    return None


def require_private(path: Path) -> None:
    """Refuse a secrets file others may read (copied with the wrong mode, or loosened by hand):
    libpq itself ignores a group- or world-readable pgpass file."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SamexpError(
            f"{path} holds passwords but is readable by other accounts (mode {mode:o}): "
            f"`chmod 600 {path}`"
        )
