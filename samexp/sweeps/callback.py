"""One MLflow parent run per sweep (grid or Optuna study), each job a nested child run.

A Hydra callback, so it works with every sweeper and launcher: before the sweep it creates (or,
for a resumed study, reopens) the parent run and exports its id; every job's Tracker nests under
it. After the sweep it writes the parent's one summary: the trial table, the best trial's
params/metric and a plot of the objective against each swept parameter (an Optuna study adds
only what the study alone knows: hydra_plugins/samexp_optuna_sweeper/report.py). MLflow itself
is reached through samexp.tracking.sweep_parent.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig

from samexp.tracking import store
from samexp.tracking.names import BEST_RUN, SWEEP_FOLDER
from samexp.tracking.sweep_parent import Parent, close_parent, open_parent, trials

log = logging.getLogger(__name__)

# a child's `samexp.state` (RUNNING: not ended yet); an Optuna trial's child shows its trial's
STATES = ("COMPLETE", "PRUNED", "FAILED", "INTERRUPTED", "RUNNING")


def sweep_key(config: DictConfig) -> str:
    """An Optuna study is one sweep however often it is resumed; a grid is one per sweep folder."""
    sweeper = config.hydra.sweeper
    if "study_name" in sweeper and sweeper.study_name:
        return f"study:{sweeper.study_name}"
    return f"grid:{config.hydra.sweep.dir}"


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent: Parent | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.tracking.enabled:
            self.parent = open_parent(instantiate(config.tracking), sweep_key(config))

    def on_multirun_end(
        self, config: DictConfig, interrupted: str | None = None, **kwargs: Any
    ) -> None:
        """FINISHED; after an interrupted job (the sweeper passes `interrupted`) KILLED, unless
        another worker still runs a trial of this sweep: then it stays RUNNING for that one."""
        if self.parent is None:
            return
        status = "FINISHED"
        try:
            summary = summarize(self.parent, config.objective, mode_of(config))
            if interrupted:
                status = "RUNNING" if summary.get("RUNNING") else "KILLED"
        finally:
            close_parent(self.parent, status)


def mode_of(config: DictConfig) -> str:
    direction = config.hydra.sweeper.get("direction", "maximize")
    return "min" if str(direction).startswith("min") else "max"


def summarize(parent: Parent, objective: str, mode: str = "max") -> dict[str, int]:
    """The sweep's one summary on its parent run: the trial table (`sweep/trials.csv`), the best
    child (its objective, run id and swept params), the objective against each swept parameter,
    and the children per state (`sweep/complete`, ...), which it returns."""
    import pandas as pd

    rows = [
        {
            "run_id": t["run_id"], "run_name": t["run_name"], "state": t["state"],
            **{f"param.{k}": v for k, v in t["overrides"].items() if not k.startswith(("optuna.", "tracking.", "hydra"))},
            objective: t["objective"],
        }
        for t in trials(parent, objective)
    ]  # fmt: skip
    if not rows:
        log.warning("sweep parent %s has no child runs", parent.run_id)
        return {}
    table = pd.DataFrame(rows)
    done = table[table["state"] == "COMPLETE"].dropna(subset=[objective])
    # the swept parameters are the overrides that differ between trials; the rest is context
    # (the stub child of a trial cut off before its job opened a run has none: left out)
    params = table[[c for c in table.columns if c.startswith("param.")]]
    launched = params[params.notna().any(axis=1)]
    swept = [c for c in launched.columns if launched[c].nunique(dropna=False) > 1]
    # every state, zeros included: workers of one study each summarize, and the last one's
    # counts must replace the earlier ones entirely
    counts = {**dict.fromkeys(STATES, 0), **table["state"].value_counts().to_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trials.csv"
        table.to_csv(csv, index=False)
        plots = [plot_objective(done, column, objective, Path(tmp)) for column in swept]
        store.record(parent.client, parent.run_id, files=[csv, *filter(None, plots)],
                     folder=SWEEP_FOLDER,
                     metrics={f"sweep/{str(state).lower()}": n for state, n in counts.items()})  # fmt: skip
    if done.empty:
        return counts
    best = done.loc[done[objective].idxmax() if mode == "max" else done[objective].idxmin()]
    # tags, not params: the best moves as a study grows (a resumed study, another worker), and
    # MLflow refuses to change a param, which would leave the previous best's values standing
    store.record(parent.client, parent.run_id,
                 metrics={objective: float(best[objective])},  # the best trial's value
                 tags={BEST_RUN: best["run_id"],
                       **{f"best.{column[6:]}": best[column] for column in swept}})  # fmt: skip
    log.info("sweep best: %s = %.4f (%s)", objective, best[objective], best["run_name"])
    return counts


def plot_objective(table, column: str, objective: str, folder: Path) -> Path | None:
    """Objective against one swept parameter, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    scatter_against(ax, table[column], table[objective], column[6:], objective)
    ax.set_title(f"{objective} vs {column[6:]}")
    fig.tight_layout()
    path = folder / f"{objective.replace('/', '_')}_vs_{column[6:]}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_against(ax, values: Sequence, objective: Sequence, name: str, label: str) -> None:
    """`objective` against one parameter's values: numbers on a numeric axis (log base 2 for
    powers of two such as LoRA ranks, base 10 over two decades), even where Optuna keeps them as
    the choices of a categorical (matplotlib would take number-like strings for categories and
    say so on every sweep); anything else as categories."""
    import pandas as pd

    x = pd.to_numeric(pd.Series(list(values)), errors="coerce")
    if x.notna().all():
        ax.scatter(x, list(objective))
        powers = set(x) <= {2.0**k for k in range(12)}
        if x.min() > 0 and x.max() / x.min() >= 100 or powers:
            ax.set_xscale("log", base=2 if powers else 10)
    else:
        ax.scatter([str(v) for v in values], list(objective))
    ax.set_xlabel(name)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
