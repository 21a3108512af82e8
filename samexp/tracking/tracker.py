"""Everything MLflow, in one place: the runner calls this sink, training code never imports mlflow.

Default store is embedded (`sqlite:///<root>/mlruns/mlflow.db`, artifacts under `<root>/mlruns/
artifacts`, root from samexp.config.paths): MLflow 3 refuses a bare `./mlruns` file store. Point
`tracking_uri` at a server for a team.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from samexp.config.checks import NON_NEGATIVE, POSITIVE, because
from samexp.config.errors import SamexpError
from samexp.config.options import option
from samexp.server.client import use_credentials
from samexp.tracking.lease import LeaseLost, Leases
from samexp.tracking.names import (
    EXPERIMENT,
    EXPERIMENT_KIND,
    GIT_COMMIT,
    LEASE,
    OVERRIDES,
    PARENT_ENV,
)
from samexp.tracking.states import (
    INTERRUPTED,
    RESUMPTIONS,
    STATE,
    ending,
    heartbeat_tag,
    interrupted_note,
    liveness_tags,
    stale_reason,
    who,
)
from samexp.tracking.store_lock import sqlite_path, store_lock

log = logging.getLogger(__name__)

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
STALE_S = 6 * 3600.0  # a RUNNING run silent this long is taken for dead
HEARTBEAT_S = 60.0


@option("tracking", "mlflow")
class Tracker:
    """A thin wrapper over the MLflow fluent API; with `enabled=False` every call is a no-op."""

    def __init__(
        self,
        tracking_uri: str,  # conf/tracking/mlflow.yaml: the sqlite store under paths.mlruns
        artifact_root: str,  # used when the experiment is created
        enabled: bool = True,
        experiment: str = EXPERIMENT,
        run_name: str
        | None = None,  # default: <adapter>-<dataset>-<model>, e.g. lora-r8-rings-vit_b
        max_images: Annotated[int, because(NON_NEGATIVE, "comparison images logged per run")] = 16,
        log_weights: bool = True,
        # at the end of the run: its model as an MLflow model (ONNX inside, samexp.export.
        # mlflow_model), and registered under this name (implies log_model); a failure there is
        # a warning and the run tag samexp.model_error, never a failed run (the weights are saved)
        log_model: bool = False,
        register: str | None = None,
        # nest under this run (sweeps set $SAMEXP_PARENT_RUN_ID instead)
        parent_run_id: str | None = None,
        # a RUNNING run whose heartbeat is older than this is taken for dead (killed, lost node)
        stale_after_s: Annotated[float, because(POSITIVE, "seconds without a heartbeat")] = STALE_S,
        # a live run says so at most this often, from inside its epochs (training steps and
        # evaluation), so an epoch longer than stale_after_s never looks dead
        heartbeat_s: Annotated[
            float, because(POSITIVE, "seconds between heartbeats")
        ] = HEARTBEAT_S,
    ) -> None:
        self.enabled = enabled
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment = experiment
        self.run_name = run_name
        self.max_images = max_images
        self.log_weights = log_weights
        self.log_model = log_model or register is not None
        self.register = register
        # a sweep's parent run: explicit, or set for every job by the sweep callback
        self.parent_run_id = parent_run_id or os.environ.get(PARENT_ENV) or None
        self.stale_after_s = stale_after_s
        # never so rare that a live run looks dead between two beats
        self.heartbeat_s = min(heartbeat_s, stale_after_s / 4)
        self._last_beat = -math.inf
        self.run_id: str | None = None
        self._client = None
        # one writer per run (samexp.tracking.lease): the lease of the run this process has open
        self.leases = Leases(sqlite_path(tracking_uri), stale_after_s,
                             lambda run_id: self._run(run_id).data.tags.get(LEASE), self._tag_lease)  # fmt: skip
        self._resumptions_seen: dict[str, str] = {}  # by check_free, before the checkpoint is read

    @contextlib.contextmanager
    def start_run(
        self,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        resume_run_id: str | None = None,
    ) -> Iterator[Tracker]:
        """A new run, or with `resume_run_id` that interrupted run reopened (its params kept).

        Ends the run FINISHED, or KILLED when interrupted or pruned, or FAILED, and re-raises.
        """
        if not self.enabled:
            yield self
            return
        import mlflow

        self.connect(mlflow)
        try:
            self.reconcile_stale_runs(keep=resume_run_id)
        except Exception as e:  # noqa: BLE001 - housekeeping of other runs never stops this one
            log.warning("could not check %s for stale runs: %s", self.tracking_uri, e)
        if resume_run_id is None:
            run = mlflow.start_run(
                run_name=self.run_name or run_name,
                parent_run_id=self.parent_run_id,
                tags={**tags, **liveness_tags(), STATE: "RUNNING"},
            )
        else:
            self.leases.hold(resume_run_id)  # refused naming the holder, nothing written yet
            try:
                before = self._resumable(resume_run_id)
                resumptions = int(before.data.tags.get(RESUMPTIONS, "0")) + 1
                run = mlflow.start_run(
                    run_id=resume_run_id,
                    tags={**liveness_tags(), STATE: "RUNNING", RESUMPTIONS: str(resumptions)},
                )
            except BaseException:
                self.leases.release()
                raise
        self.run_id = run.info.run_id
        try:
            if resume_run_id is None:
                self.leases.hold(self.run_id, settle_s=0)  # nobody else knows the new id yet
                mlflow.log_params({k: _param_value(v) for k, v in params.items()})
            log.info("MLflow run %s (%s) in %s", run.info.run_name, self.run_id, self.tracking_uri)
            yield self
        except LeaseLost:
            _forget_active_run()  # the run is another process's now: its state is not ours to end
            raise
        except BaseException as e:
            status, end_tags = ending(e, run.data.tags.get(OVERRIDES, ""), self.run_id)
            try:
                mlflow.set_tags({k: _param_value(v) for k, v in end_tags.items()})
                mlflow.end_run(status)
            except Exception as store_error:  # noqa: BLE001 - the run's own error is the one to raise
                # left RUNNING: the next run's reconcile_stale_runs ends it
                log.warning(
                    "could not end MLflow run %s as %s: %s", self.run_id, status, store_error
                )
            raise
        else:  # ended while still held: no other writer reopens a run before it is FINISHED
            mlflow.set_tag(STATE, "COMPLETE")
            mlflow.end_run("FINISHED")
        finally:
            self.leases.release()

    def connect(self, mlflow) -> None:
        """Point MLflow at the store and experiment, creating them if new.

        The first process to open a fresh sqlite store runs its schema migrations; two doing so at
        once break each other (alembic: "expected to match one row"), so that is done under a lock.
        A team server's login comes from its credentials file when the environment has none.
        """
        if self.tracking_uri.startswith("http"):
            use_credentials()
        with store_lock(self.tracking_uri):
            mlflow.set_tracking_uri(self.tracking_uri)
            experiment = mlflow.get_experiment_by_name(self.experiment)
            if experiment is None:
                # a server chooses its own artifact store; the embedded one keeps them under mlruns/
                location = (
                    None
                    if self.tracking_uri.startswith("http")
                    else Path(self.artifact_root).resolve().as_uri()
                )
                try:
                    mlflow.create_experiment(
                        self.experiment, artifact_location=location, tags=dict([EXPERIMENT_KIND])
                    )
                except mlflow.exceptions.MlflowException:
                    pass  # created meanwhile by a parallel run (on a server: no lock there)
            mlflow.set_experiment(self.experiment)
            if experiment is not None and EXPERIMENT_KIND[0] not in experiment.tags:
                with contextlib.suppress(mlflow.exceptions.MlflowException):  # read-only: as it is
                    mlflow.set_experiment_tag(*EXPERIMENT_KIND)

    def client(self):
        """This store's MlflowClient, connected (store and experiment created) on first use."""
        if self._client is None:
            import mlflow

            self.connect(mlflow)
            self._client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def heartbeat(self) -> None:
        """Say the run is alive, at most every `heartbeat_s` (training calls this after every
        optimizer step and evaluation). A store that is briefly unreachable or locked costs one
        warning, never the run."""
        if not self.enabled or self.run_id is None:
            return
        now = time.monotonic()
        if now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        try:
            self.leases.beat()
            for key, value in heartbeat_tag().items():
                self.client().set_tag(self.run_id, key, value)
        except LeaseLost:
            raise
        except Exception as e:  # noqa: BLE001 - any store error is transient for a heartbeat
            log.warning("MLflow heartbeat of run %s failed: %s", self.run_id, e)

    def check_free(self, run_id: str) -> None:
        """Refuse (RunBusy, naming the holder) a run that another live process writes; takes
        nothing (start_run does). Remembers how often the run was resumed, so that one resumed by
        another process between now and start_run is refused there, not continued from a
        checkpoint older than that process's."""
        if not self.enabled:
            return
        self.leases.of(run_id).probe()
        self._resumptions_seen[run_id] = self._run(run_id).data.tags.get(RESUMPTIONS, "0")

    def _tag_lease(self, run_id: str, value: str | None) -> None:
        """Set (or with None delete) a run's lease tag: where no file lock can serve."""
        if value is None:
            self.client().delete_tag(run_id, LEASE)
        else:
            self.client().set_tag(run_id, LEASE, value)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the open run (none with tracking off)."""
        if self.enabled and self.run_id is not None:
            for key, value in tags.items():
                self.client().set_tag(self.run_id, key, value)

    def run_status(self, run_id: str) -> str:
        """RUNNING, FINISHED, FAILED, KILLED or SCHEDULED."""
        return self._run(run_id).info.status

    def download_artifact(self, run_id: str, artifact_path: str, dst_dir: str | Path) -> Path:
        """One artifact of a run, copied into `dst_dir`."""
        self._run(run_id)
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client().download_artifacts(run_id, artifact_path, str(dst_dir)))
        except Exception as e:  # noqa: BLE001 - MLflow raises OSError or MlflowException
            raise SamexpError(
                f"MLflow run {run_id} has no artifact {artifact_path} in {self.tracking_uri} "
                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
            ) from e

    def reconcile_stale_runs(self, keep: str | None = None) -> list[str]:
        """End as KILLED (state INTERRUPTED) the RUNNING runs of this experiment whose process is
        gone, so they show as what they are and `trainer.resume=last` finds them. `keep`: a run
        about to be reopened, left as it is. Returns the ids ended."""
        if not self.enabled:
            return []
        client = self.client()
        ended = []
        for run in self._search("attributes.status = 'RUNNING'"):
            why = stale_reason(run.data.tags, self.stale_after_s)
            if why is None or run.info.run_id == keep:
                continue
            if self.leases.taken_elsewhere(run.info.run_id, run.data.tags):  # being resumed
                continue
            note = interrupted_note(why, run.data.tags, run.info.run_id)
            client.set_tag(run.info.run_id, STATE, "INTERRUPTED")
            client.set_tag(run.info.run_id, INTERRUPTED, _param_value(note))
            client.set_terminated(run.info.run_id, "KILLED")
            log.info("MLflow run %s marked KILLED: %s", run.info.run_id, note)
            ended.append(run.info.run_id)
        return ended

    def find_resumable(self) -> str | None:
        """The newest interrupted run of this experiment (`trainer.resume=last`), or None."""
        if not self.enabled:
            return None
        self.reconcile_stale_runs()
        found = self._search(
            f"attributes.status = 'KILLED' and tags.`{STATE}` = 'INTERRUPTED'", newest_only=True
        )
        return found[0].info.run_id if found else None

    def _resumable(self, run_id: str):
        """The run to reopen, checked (its lease held): MLflow reopens only a live run of the
        active experiment, and only one that no other process resumed (or finished) since
        check_free."""
        run = self._run(run_id)
        experiment = self.client().get_experiment_by_name(self.experiment)
        seen = self._resumptions_seen.get(run_id)
        if run.info.experiment_id != experiment.experiment_id:
            problem = f"it belongs to another experiment than tracking.experiment={self.experiment}"
        elif run.info.lifecycle_stage == "deleted":
            problem = "it is deleted (restore it with `mlflow runs restore`)"
        elif seen is not None and run.data.tags.get(RESUMPTIONS, "0") != seen:
            problem = (
                f"another process ({who(run.data.tags)}) resumed it after this one read its "
                "checkpoint; resume again to go on from that process's newest checkpoint"
            )
        else:
            return run
        raise SamexpError(f"cannot resume MLflow run {run_id} of {self.tracking_uri}: {problem}")

    def _run(self, run_id: str):
        """The run, or a SamexpError naming it and the store."""
        if not self.enabled:
            raise SamexpError(
                f"cannot read MLflow run {run_id}: tracking is off (tracking.enabled=false)"
            )
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_run(run_id)
        except MlflowException as e:
            raise SamexpError(
                f"no MLflow run {run_id} in {self.tracking_uri} (check the id and "
                f"tracking.tracking_uri): {str(e).splitlines()[0]}"
            ) from e

    def _search(self, filter_string: str, newest_only: bool = False) -> list:
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment)
        runs, token = [], None
        while True:
            page = client.search_runs(
                [experiment.experiment_id],
                filter_string=filter_string,
                order_by=["attributes.start_time DESC"],
                max_results=1 if newest_only else 1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if newest_only or not token:
                return runs

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            import mlflow

            if step is not None:  # a step of training: logged by the lease's holder only
                self.leases.check()

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

            self.leases.check()  # checkpoints and weights: written by the lease's holder only

            mlflow.log_artifact(str(path), artifact_path)


def _forget_active_run() -> None:
    """Drop MLflow's active run in this process without writing to it (mlflow.end_run would set
    its status, which belongs to the process that took the run over)."""
    try:
        from mlflow.tracking import fluent

        stack = fluent._active_run_stack.get()
        if stack:
            stack.pop()
    except (ImportError, AttributeError):  # another MLflow: the process ends anyway
        log.debug("could not drop MLflow's active run", exc_info=True)


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
    tags = {OVERRIDES: " ".join(overrides)}
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        tags["git_commit"] = sha
        tags[GIT_COMMIT] = sha
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
