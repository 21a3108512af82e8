"""Where runs go: one root for the MLflow store, Optuna studies and run folders, the same from
any working folder (a relative `mlruns/` would follow the shell, and `make ui` would see nothing).

The root is `$SAMEXP_HOME`; else the source checkout samexp runs from (its repo root, where
`make ui` looks); else `~/samexp` for an installed package. Configs read it as `${samexp_home:}`
(conf/paths/default.yaml).

Two runs started in the same second would share Hydra's `outputs/<date>/<time>/` folder and one
would overwrite the other's weights, so a run folder ends in `${samexp_run_suffix:}`, unique
to its process.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from omegaconf import OmegaConf

ENV = "SAMEXP_HOME"


def checkout_root() -> Path | None:
    """The repo this samexp is imported from, or None when it is an installed package."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None


def samexp_home() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser().resolve()
    return checkout_root() or Path.home() / "samexp"


def default_tracking_uri() -> str:
    """The embedded MLflow store under the root, for Python callers that name none."""
    return f"sqlite:///{samexp_home()}/mlruns/mlflow.db"


_suffix: tuple[int, str] | None = None  # (pid, suffix): a forked child makes its own


def run_suffix() -> str:
    """`<pid>-<4 hex>`, the same for every call in one process: the pid keeps runs on one host
    apart, the random part runs on hosts that share a filesystem."""
    global _suffix
    if _suffix is None or _suffix[0] != os.getpid():
        _suffix = (os.getpid(), f"{os.getpid()}-{secrets.token_hex(2)}")
    return _suffix[1]


def register_resolver() -> None:
    # not cached: tests and long-lived processes may change SAMEXP_HOME between compositions
    OmegaConf.register_new_resolver("samexp_home", lambda: str(samexp_home()), replace=True)
    OmegaConf.register_new_resolver("samexp_run_suffix", run_suffix, replace=True)
    # `${samexp_dataset_name:${dataset.name},${dataset.root}}`: the name runs and studies carry
    OmegaConf.register_new_resolver("samexp_dataset_name", dataset_name, replace=True)


def dataset_name(name: str | None, root: str | Path) -> str:
    """What runs are named after: `dataset.name`, else the root folder's name, so `dataset=rings
    dataset.root=/data/bottles` is not reported as rings."""
    return name or Path(root).resolve().name


register_resolver()
