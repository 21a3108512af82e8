"""Log a finished Optuna study to the sweep's MLflow parent run: the trial table, the plots, the
best value. MLflow and matplotlib are imported here only, so Hydra's plugin scan stays light."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


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
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    tags = [RunTag("study.n_trials", str(len(finished)))]
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
        wanted["slice"] = lambda: plots.plot_slice(study)

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


def _figure(axes: object):
    # plot_slice returns an array of Axes when there are several parameters
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.figure
