"""What a sweep leaves behind: the study's results in the sweep folder and, on the sweep's MLflow
parent run, the trial table, the plots and the best value. MLflow and matplotlib are imported
inside the functions that need them, so Hydra's plugin scan stays light."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from .children import PARENT_ENV, URI_ENV
from .workers import is_result

log = logging.getLogger(__name__)


def write_results(
    study: optuna.Study, sweep_dir: Path, storage: str | None, direction: str
) -> None:
    """`optuna_results.yaml` and `trials.csv` in the sweep folder, and the study on the sweep's
    MLflow parent run when there is one."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    best = best_trial(study)
    if best is None:
        log.warning("Optuna study '%s': no trial completed (%s)", study.study_name, dict(counts))
    else:
        log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "study_name": study.study_name,
        "storage": display_storage(storage),
        "direction": direction,
        "trials": dict(counts),
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else best.value,
        "best_params": None if best is None else best.params,
    }
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optuna_results.yaml")
    table = sweep_dir / "trials.csv"
    study.trials_dataframe().to_csv(table, index=False)

    parent_run_id = os.environ.get(PARENT_ENV)
    if parent_run_id:
        try:
            log_study(
                study,
                table,
                tracking_uri=os.environ.get(URI_ENV),
                run_id=parent_run_id,
                storage=display_storage(storage),
            )
        except Exception:  # the study is safe in its storage and in trials.csv
            log.warning("could not log the study to MLflow run %s", parent_run_id, exc_info=True)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def display_storage(storage: str | None) -> str:
    """The storage URL without its password, for logs and MLflow."""
    if storage is None:
        return "memory"
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


def log_study(
    study: optuna.Study,
    trials_csv: Path,
    *,
    tracking_uri: str | None,
    run_id: str,
    storage: str,
) -> None:
    """Everything goes through MlflowClient to `run_id`: no active run is started or changed."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    results = [t for t in study.get_trials(deepcopy=False) if is_result(t)]  # what n_trials counts
    tags = [RunTag("study.n_trials", str(len(results)))]
    metrics = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        tags.append(RunTag("study.best_trial", str(best.number)))
        metrics.append(Metric("study/best_value", best.value, int(time.time() * 1000), 0))
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param("study.name", study.study_name), Param("study.storage", storage)],
        tags=tags,
    )
    client.log_artifact(run_id, str(trials_csv), artifact_path="study")
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_plots(study, Path(tmp)):
            client.log_artifact(run_id, str(path), artifact_path="study")


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """PNGs of the optimisation history, the parameter importances and objective vs each
    parameter; a plot that cannot be drawn for this study is skipped with a log line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [
        name
        for name in {p for t in complete for p in t.params}
        if len({repr(t.params.get(name)) for t in complete}) > 1
    ]
    wanted: dict[str, Callable[[], object]] = {}
    if complete:
        wanted["optimization_history"] = lambda: plots.plot_optimization_history(study)
    if len(complete) >= 2 and varied:
        wanted["param_importances"] = lambda: plots.plot_param_importances(study)
    if complete and complete[0].params:
        wanted["slice"] = lambda: _slice(complete)

    written = []
    for name, plot in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's ExperimentalWarning on every plot
                axes = plot()
            figure = _figure(axes)
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            written.append(path)
        except Exception as e:
            log.warning("skipped the %s plot of study '%s': %s", name, study.study_name, e)
        finally:
            plt.close("all")
    return written


def _slice(complete: list[FrozenTrial]):
    """The objective against each parameter, side by side (Optuna's plot_slice, but a numeric
    choice such as a LoRA rank on a numeric axis: Optuna passes it to matplotlib as a string)."""
    import matplotlib.pyplot as plt

    from samexp.sweeps.callback import scatter_against

    names = sorted({name for t in complete for name in t.params})
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes[0], names, strict=True):
        shown = [t for t in complete if name in t.params]
        scatter_against(ax, [t.params[name] for t in shown], [t.value for t in shown], name,
                        "Objective Value" if ax is axes[0][0] else "")  # fmt: skip
    fig.suptitle("Slice Plot")
    return axes[0]


def _figure(axes: object):
    # _slice returns an array of Axes, one per parameter
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure
