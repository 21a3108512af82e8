"""Everything MLflow, in one place: the runner calls this sink, training code never imports mlflow.

Default store is embedded (`sqlite:///<root>/mlruns/mlflow.db`, artifacts under `<root>/mlruns/
artifacts`, root from samexp.paths): MLflow 3 refuses a bare `./mlruns` file store. Point
`tracking_uri` at a server for a team.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from samexp.checks import NON_NEGATIVE, because
from samexp.options import option

log = logging.getLogger(__name__)

PARENT_ENV = "SAMEXP_PARENT_RUN_ID"
PACKAGES = (
    "samexp",
    "torch",
    "torchvision",
    "segment-anything",
    "mlflow",
    "monai",
    "hydra-core",
    "optuna",
)


@option("tracking", "mlflow")
class Tracker:
    """A thin wrapper over the MLflow fluent API; with `enabled=False` every call is a no-op."""

    def __init__(
        self,
        tracking_uri: str,  # conf/tracking/mlflow.yaml: the sqlite store under paths.mlruns
        artifact_root: str,  # used when the experiment is created
        enabled: bool = True,
        experiment: str = "samexp",
        run_name: str
        | None = None,  # default: <adapter>-<dataset>-<model>, e.g. lora-r8-rings-vit_b
        max_images: Annotated[int, because(NON_NEGATIVE, "comparison images logged per run")] = 16,
        log_weights: bool = True,
        # nest under this run (sweeps set $SAMEXP_PARENT_RUN_ID instead)
        parent_run_id: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment = experiment
        self.run_name = run_name
        self.max_images = max_images
        self.log_weights = log_weights
        # a sweep's parent run: explicit, or set for every job by the sweep callback
        self.parent_run_id = parent_run_id or os.environ.get(PARENT_ENV) or None
        self.run_id: str | None = None

    @contextlib.contextmanager
    def start_run(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> Iterator[Tracker]:
        if not self.enabled:
            yield self
            return
        import mlflow

        self.connect(mlflow)
        run = mlflow.start_run(run_name=self.run_name or run_name, parent_run_id=self.parent_run_id)
        self.run_id = run.info.run_id
        try:
            mlflow.set_tags(tags)
            mlflow.log_params({k: _param_value(v) for k, v in params.items()})
            log.info("MLflow run %s (%s) in %s", run.info.run_name, self.run_id, self.tracking_uri)
            yield self
        except BaseException as e:
            # a pruned sweep trial is stopped on purpose, not broken: show it as KILLED, tagged
            pruned = type(e).__name__ == "TrialPruned"
            mlflow.set_tag("samexp.state", "PRUNED" if pruned else "FAILED")
            if not pruned:
                mlflow.set_tag("samexp.error", _param_value(f"{type(e).__name__}: {e}"))
            mlflow.end_run("KILLED" if pruned else "FAILED")
            raise
        mlflow.set_tag("samexp.state", "COMPLETE")
        mlflow.end_run("FINISHED")

    def connect(self, mlflow) -> None:
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            # a server chooses its own artifact store; the embedded default keeps them under mlruns/
            location = (
                None
                if self.tracking_uri.startswith("http")
                else Path(self.artifact_root).resolve().as_uri()
            )
            try:
                mlflow.create_experiment(self.experiment, artifact_location=location)
            except mlflow.exceptions.MlflowException:
                pass  # created meanwhile by a parallel run
        mlflow.set_experiment(self.experiment)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_text(self, text: str, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_text(text, artifact_file)

    def log_json(self, data: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(data, indent=2), artifact_file)

    def log_image(self, image: np.ndarray, artifact_file: str) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_image(image, artifact_file=artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path)


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: MLflow params are flat."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def provenance(overrides: list[str]) -> dict[str, str]:
    """Where a run came from: git commit and dirty flag, package versions, the command-line overrides."""
    tags = {"overrides": " ".join(overrides)}
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        tags["git_commit"] = sha
        tags["mlflow.source.git.commit"] = sha
        tags["git_dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.CalledProcessError):
        tags["git_commit"] = "unknown"
    for package in PACKAGES:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return tags


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="samexp-"))
