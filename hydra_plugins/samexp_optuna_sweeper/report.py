"""What a sweep leaves behind: the study's results in the sweep folder (`optuna_results.yaml`,
`trials.csv`) and, on the sweep's MLflow parent run, what only the study knows: its name, its
storage and the two plots of the search itself (optimisation history, parameter importances).
The parent's trial table, best trial and objective-vs-parameter plots are the sweep callback's
one summary (samexp.sweeps.callback.summarize), written once for grids and studies alike.
MLflow (through samexp.tracking) and matplotlib are imported inside the functions that need
them, so Hydra's plugin scan stays light."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from samexp.tracking import store
from samexp.tracking.names import STUDY, STUDY_STORAGE, STUDY_TRIALS, SWEEP_FOLDER
from samexp.tracking.sweep_parent import Parent, exported

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

    try:
        parent = exported()
        if parent is not None:
            log_study(study, parent, storage=display_storage(storage))
    except Exception:  # the study is safe in its storage and in trials.csv
        log.warning("could not log the study to the sweep's MLflow parent run", exc_info=True)


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


def log_study(study: optuna.Study, parent: Parent, *, storage: str) -> None:
    """The study's name, storage, trial count and plots onto the parent run, by id: no active run
    is started or changed."""
    results = [t for t in study.get_trials(deepcopy=False) if is_result(t)]  # what n_trials counts
    with tempfile.TemporaryDirectory() as tmp:
        store.record(parent.client, parent.run_id, files=write_plots(study, Path(tmp)),
                     folder=SWEEP_FOLDER, params={STUDY: study.study_name, STUDY_STORAGE: storage},
                     tags={STUDY_TRIALS: str(len(results))})  # fmt: skip


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """PNGs of the optimisation history and the parameter importances (the objective against each
    parameter is the sweep summary's); a plot that cannot be drawn for this study is skipped with
    a log line."""
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

    written = []
    for name, plot in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's ExperimentalWarning on every plot
                axes = plot()
            figure = axes.figure
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            written.append(path)
        except Exception as e:
            log.warning("skipped the %s plot of study '%s': %s", name, study.study_name, e)
        finally:
            plt.close("all")
    return written
