"""The team server's data folder and credentials, as a hostile or unlucky setup leaves them: each
row prints one line naming the file or folder and what to do, never a traceback.

Two `start`s at once on a fresh folder, and what another OS account can reach of a running
server (nothing without the credentials), are in tests/server/test_server.py: they need the servers up.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from samexp.config.errors import SamexpError
from samexp.server import __main__ as cli
from samexp.server import client, postgres, secrets
from samexp.server.procs import HOST


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` unwritable for this process: its mode for a normal user; a read-only bind mount
    for root, whom modes do not stop (skipped where root may not mount)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield
        folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "--bind", "-o", "ro", folder, folder], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount {folder} read-only here: {mount.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", folder], check=True)


def start_in(data: Path) -> list[str]:
    return ["start", "--data", str(data)]


def read_only_folder(tmp_path: Path) -> contextlib.AbstractContextManager:
    (tmp_path / "server").mkdir()
    return read_only(tmp_path / "server")


def passwordless_cluster(tmp_path: Path) -> contextlib.AbstractContextManager:
    """What samexp wrote before passwords: a cluster, and no secrets beside it."""
    (tmp_path / "server" / "postgres").mkdir(parents=True)
    (tmp_path / "server" / "postgres" / "PG_VERSION").write_text("15\n")
    return contextlib.nullcontext()


CASES = [
    pytest.param(
        read_only_folder,
        "cannot write the server's data folder {data} \\((Read-only file system|Permission "
        "denied)\\): choose a folder you may write with --data",
        id="server-read-only-data-folder",
    ),
    pytest.param(
        passwordless_cluster,
        "{data} was created by an older samexp whose PostgreSQL let every local account in as "
        "superuser, without a password: it is not started again",
        id="server-folder-of-the-passwordless-samexp",
    ),
]


@pytest.mark.parametrize(("setup", "message"), CASES)
def test_a_bad_server_folder_is_one_line(tmp_path, capsys, setup, message):
    try:
        postgres.bin_dir()
    except SamexpError:
        pytest.skip("PostgreSQL is not installed (make postgresql)")
    data = tmp_path / "server"
    with setup(tmp_path):
        code = cli.main(start_in(data))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.search(message.format(data=re.escape(str(data))), err), err
    assert not (data / secrets.CREDENTIALS_FILE).exists(), "nothing generated for a refused folder"


def test_a_credentials_file_others_can_read_is_refused_naming_it(tmp_path, monkeypatch):
    """libpq would skip such a file and fail with 'no password supplied': say why instead."""
    copy = tmp_path / "credentials.pgpass"
    copy.write_text(f"{HOST}:*:*:{postgres.WORKER}:secret\n")
    copy.chmod(0o644)
    monkeypatch.setenv(client.PGPASSFILE, str(copy))
    with pytest.raises(SamexpError, match=rf"{copy} holds passwords but is readable by other accounts \(mode 644\): `chmod 600 {copy}`"):  # fmt: skip
        client.use_credentials()


def test_a_worker_takes_its_logins_from_the_credentials_file_unless_set(tmp_path, monkeypatch):
    copy = tmp_path / "credentials.pgpass"
    secrets.write_pgpass(copy, postgres.WORKER, "s3cret", "test")
    assert copy.stat().st_mode & 0o777 == 0o600
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(client.PGPASSFILE, str(copy))
    client.use_credentials()
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == postgres.WORKER
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mine")  # what the environment says wins
    client.use_credentials()
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "mine"
