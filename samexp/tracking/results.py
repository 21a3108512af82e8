"""Keeping what a run trained: the adapter file in the run folder and the MLflow run, and when that
write fails (disk full, file-size limit), a copy where it can be recovered, named in the error."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from samexp.adapters.base import Adapter
from samexp.adapters.io import save_adapter
from samexp.config.errors import SamexpError, WeightsWriteError
from samexp.models.build import BaseModel
from samexp.tracking.tracker import Tracker


def save_weights(path: Path, base: BaseModel, adapter: Adapter, tracker: Tracker) -> Path:
    """The adapter at `path` and, when asked, in the MLflow run. A failed write ends the run with
    one line saying where the trained weights were kept instead: they took the whole run."""
    try:
        weights = save_adapter(path, base, adapter)
    except WeightsWriteError as e:
        raise SamexpError(f"{e}; {rescue(base, adapter, tracker)}") from None
    if tracker.log_weights:
        try:
            _log_artifacts(tracker, weights)
        except Exception as e:  # a full or unreachable artifact store; the local copy is whole
            raise SamexpError(
                f"could not log the weights to MLflow run {tracker.run_id} "
                f"({type(e).__name__}: {str(e).splitlines()[0]}); they are saved in {weights}"
            ) from None
    return weights


def rescue(base: BaseModel, adapter: Adapter, tracker: Tracker) -> str:
    """Keep weights whose destination failed: in the system temp folder, and from there in the
    MLflow run's artifacts (often another disk or a server). Says where they are."""
    folder = Path(tempfile.gettempdir()) / f"samexp-rescue-{tracker.run_id or os.getpid()}"
    try:
        kept = save_adapter(folder / "adapter.safetensors", base, adapter)
    except WeightsWriteError as e:
        return f"keeping them in {folder} failed too ({e}): the trained weights are lost"
    where = f"the trained weights were kept in {kept}"
    if tracker.enabled:
        try:
            _log_artifacts(tracker, kept)
            where += f" and logged to MLflow run {tracker.run_id} as weights/{kept.name}"
        except Exception as e:  # the local copy is what matters; say why MLflow has none
            where += f" (not in MLflow: {type(e).__name__})"
    return where


def _log_artifacts(tracker: Tracker, weights: Path) -> None:
    for file in (weights, weights.with_suffix(".json")):
        tracker.log_artifact(file, "weights")
