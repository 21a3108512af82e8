"""`pip install .` (not editable) gives a samexp that runs: the configs ship inside the wheel, and
an installed samexp writes its runs under ~/samexp whatever folder it runs from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, data_root

pytestmark = pytest.mark.slow


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                          **kwargs)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel. Its dependencies (torch alone is GBs) come from
    this environment's site-packages as a plain path: .pth files there are not processed, so the
    checkout's editable install stays out and `import samexp` can only find the wheel."""
    tmp = tmp_path_factory.mktemp("install")
    # built from a copy of the project's files: an in-tree build would leave build/ in the repo
    files = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPO)
    for name in filter(None, files.stdout.split("\0")):
        if (REPO / name).is_file() and not (REPO / name).is_symlink():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp / "src" / name)
    _run(sys.executable, "-m", "pip", "wheel", tmp / "src", "--no-deps", "--no-build-isolation",
         "-q", "-w", tmp / "wheel", cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "wheel").glob("samexp-*.whl")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    site = Path(
        _run(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
        ).stdout.strip()
    )
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel)
    (site / "samexp-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin" / "python"


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = _run(installed, "-c", "import samexp; print(samexp.__file__)", cwd=tmp_path).stdout
    assert "site-packages" in where and str(REPO) not in where


def test_the_wheel_runs_the_tiny_smoke_run_from_another_folder(installed, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SAMEXP_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), SAMEXP_OFFLINE="1", SAMEXP_DATA=str(data_root()))
    _run(installed, "-m", "samexp", "model=tiny", "adapter=decoder", "trainer.epochs=1",
         "trainer.max_steps=1", "trainer.device=cpu", cwd=elsewhere, env=env)  # fmt: skip
    runs = home / "samexp"
    assert (runs / "mlruns" / "mlflow.db").is_file()
    assert list((runs / "outputs").glob("*/*/adapter.safetensors"))
    assert not any(elsewhere.iterdir())  # nothing lands in the folder it ran from
