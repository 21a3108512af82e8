"""Interrupted runs, kept and continued: checkpoints written beside the run and in its MLflow
artifacts, and `trainer.resume=<run id>|last` finding one, checking that the config is the same
and fetching its checkpoint."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from samexp.config.atomic import atomic_path
from samexp.config.errors import Interrupted, SamexpError
from samexp.tracking.states import resume_command
from samexp.tracking.tracker import Tracker, flatten
from samexp.training.state import TrainState, save_state

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
ARTIFACTS = "checkpoints"  # their folder in the run's artifacts
# what a resumed run may change: how long it trains, where this part writes locally, and the
# resume key itself
MAY_DIFFER = ("trainer.epochs", "trainer.resume", "output_dir")


class Checkpoints:
    """`fit`'s checkpoint callback: last.pt every time, best.pt when the monitor improved, each
    written atomically in `folder` and then logged to the run (a crash between the two keeps the
    previous copy in MLflow)."""

    def __init__(self, folder: Path, tracker: Tracker, logged: str | None = None) -> None:
        self.folder, self.tracker = folder, tracker
        # where the newest checkpoint in the run stands (`epoch 2 step 6`), or None: what a
        # resume goes on from (a resumed run starts with the one it was resumed from)
        self.logged = logged

    @property
    def last(self) -> Path:
        return self.folder / LAST

    def __call__(self, state: TrainState, is_best: bool) -> None:
        try:
            save_state(state, self.last)
        # a full disk: OSError, or torch's RuntimeError from its zip writer. A safety net that
        # cannot be written must not end the run it guards
        except (OSError, RuntimeError) as e:
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            log.warning("could not write the checkpoint after %s to %s (%s); training goes on, "
                        "the previous checkpoint stays the last", state.where, self.last, reason)  # fmt: skip
            return
        files = [self.last]
        if is_best:
            with atomic_path(self.folder / BEST) as tmp:
                shutil.copyfile(self.last, tmp)
            files.append(self.folder / BEST)
        for file in files:
            self.tracker.log_artifact(file, ARTIFACTS)
        self.logged = state.where
        log.debug("checkpoint after %s: %s", state.where, self.last)


def run_to_resume(tracker: Tracker, resume: str | None) -> str | None:
    """The MLflow run `trainer.resume` names (`last`: the newest interrupted one), or None."""
    if resume is None:
        return None
    if not tracker.enabled:
        raise SamexpError(
            f"trainer.resume={resume} needs tracking (tracking.enabled=true): checkpoints of "
            "interrupted runs are kept in their MLflow run"
        )
    if resume == "last":
        found = tracker.find_resumable()
        if found is None:
            raise SamexpError(
                f"trainer.resume=last: no interrupted run in experiment {tracker.experiment!r} "
                f"of {tracker.tracking_uri}"
            )
        tracker.check_free(found)
        return found
    status = tracker.run_status(resume)  # raises, naming the store, for an unknown id
    if status == "FINISHED":
        raise SamexpError(f"trainer.resume={resume}: that run finished; nothing to resume")
    # before a model is built: a run another process writes (its own, or another resume) is
    # refused naming it; the lease itself is taken when the run is reopened (Tracker.start_run)
    tracker.check_free(resume)
    return resume


def check_same_config(
    tracker: Tracker, run_id: str, resolved: dict[str, Any], scratch: Path
) -> None:
    """Refuse to continue a run under another config: its metrics and weights would describe
    neither. Only MAY_DIFFER may change; every other differing key is listed."""
    logged = tracker.download_artifact(run_id, "config.yaml", scratch)
    before = flatten(yaml.safe_load(logged.read_text()) or {})
    now = flatten(resolved)
    differing = [
        f"{key} ({before.get(key, '<absent>')!r} -> {now.get(key, '<absent>')!r})"
        for key in sorted(set(before) | set(now))
        if key not in MAY_DIFFER and before.get(key) != now.get(key)
    ]
    if differing:
        raise SamexpError(
            f"trainer.resume={run_id}: the config differs from the interrupted run's in "
            f"{', '.join(differing)}; only trainer.epochs may change when resuming"
        )


def fetch_checkpoint(tracker: Tracker, run_id: str, scratch: Path) -> Path:
    return tracker.download_artifact(run_id, f"{ARTIFACTS}/{LAST}", scratch)


def check_epochs(state: TrainState, epochs: int, run_id: str) -> None:
    """trainer.epochs may grow on resume, never fall below where the run already is: the loop
    would train nothing and the run would end FINISHED with weights from further than it says."""
    if epochs < state.epoch:
        raise SamexpError(
            f"trainer.resume={run_id}: trainer.epochs={epochs} is below the {state.epoch} epochs "
            f"that run already reached (it stopped at {state.where}); resume with "
            f"trainer.epochs={state.epoch} or more"
        )


def rank_lost(checkpoints: Checkpoints, hint: str, is_main: bool) -> Exception:
    """What a torchrun job that lost a rank without a word (SIGKILL, the OOM killer, a node
    down) ends with: interrupted, to go on from its newest checkpoint (the steps after it are
    trained again); a failure if it has none yet."""
    why = "another rank was lost: killed, out of memory or its node down"
    if checkpoints.logged is None and is_main:
        return SamexpError(f"{why}, before the first checkpoint: nothing to resume; start it again")
    return Interrupted(why, 1, checkpoints.logged or "its last checkpoint", hint)


def resume_hint(overrides: list[str], run_id: str | None, checkpoint: Path,
                per_node: int = 1) -> str:  # fmt: skip
    """What to type to continue (launched as it was: torchrun with `per_node` processes per
    node); with tracking off there is no run to continue in."""
    if run_id is None:
        return f"nothing: tracking is off (the checkpoint is {checkpoint}, resuming needs a run)"
    return resume_command(overrides, run_id, per_node)
