"""A study's runs as tables: one row per (method, seed, test instance) with its IoU and Dice,
zero-shot included as a method of its own, and one row of costs per method. Everything comes from
what the runs logged (per-image figures, params, metrics); nothing is evaluated again."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import yaml

from samexp.config.errors import SamexpError
from samexp.config.options import by_target
from samexp.tracking.finished_runs import FinishedRun

log = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot"
SEED = "trainer.seed"  # the param that tells a method's runs apart
# a run's cost as its metrics name it -> the report's column (mean over a method's runs)
COSTS = {
    "params/trainable": "trainable",
    "train/seconds_per_step": "s/step",
    "train/peak_memory_mb": "peak MB",
    "train/wall_s": "wall s",
}
COLUMNS = ["method", "seed", "instance", "category", "iou", "dice"]


def method_of(run: FinishedRun) -> str:
    """The adapter's label (`lora-r8`, `decoder`), from the adapter node of the config the run
    logged, built by its registered class only (a config names code; only samexp's own runs);
    the run name's first word when there is none."""
    node = (yaml.safe_load(run.config) or {}).get("adapter") if run.config else None
    option = by_target("adapter", node.get("_target_")) if isinstance(node, dict) else None
    if option is None:
        return run.name.split("-")[0]
    try:
        return option.obj(**{k: v for k, v in node.items() if k != "_target_"}).label()
    except (SamexpError, TypeError, ValueError) as e:  # a run of an older version of the kind
        log.warning("run %s: %s's label cannot be rebuilt (%s); it counts as %s",
                    run.run_id, option.name, e, option.name)  # fmt: skip
        return option.name


def one_per_seed(runs: list[FinishedRun]) -> list[FinishedRun]:
    """The newest run of each (method, seed) (runs come oldest first): a study resumed after a
    run was repeated counts it once, not as two seeds' worth of evidence."""
    newest = {(method_of(r), r.params.get(SEED)): r for r in runs}
    if len(newest) < len(runs):
        log.warning("%d runs repeat a method and seed: the newest of each is kept",
                    len(runs) - len(newest))  # fmt: skip
    return list(newest.values())


def figures(runs: Iterable[FinishedRun]) -> pd.DataFrame:
    """COLUMNS, a row per fine-tuned instance of every run, and zero-shot's per (seed, instance):
    its figures are each run's baseline, the same for every method of a seed."""
    rows, zero_shot = [], {}
    for run in runs:
        method, seed = method_of(run), int(float(run.params.get(SEED, 0)))
        for r in run.per_image:
            instance, category = f"{r['name']}#{r['instance']}", r.get("category", "object")
            rows.append((method, seed, instance, category, r["final_iou"], r["final_dice"]))
            baseline = (r["baseline_iou"], r["baseline_dice"])
            seen = zero_shot.setdefault((seed, instance, category), baseline)
            if not np.allclose(seen, baseline, atol=1e-6, equal_nan=True):
                log.warning("zero-shot figures of %s differ between runs of seed %d (%s, %s): "
                            "were they run on the same split and prompts?", instance, seed,
                            seen, baseline)  # fmt: skip
    rows += [(ZERO_SHOT, s, i, c, iou, dice) for (s, i, c), (iou, dice) in zero_shot.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def costs(runs: Iterable[FinishedRun]) -> pd.DataFrame:
    """Per method: its runs and seeds, and the mean of each cost its runs logged (nan when none
    did); zero-shot trains nothing."""
    rows = [{"method": method_of(r), "seed": int(float(r.params.get(SEED, 0))),
             **{column: r.metrics.get(metric, np.nan) for metric, column in COSTS.items()}}
            for r in runs]  # fmt: skip
    table = pd.DataFrame(rows)
    out = table.groupby("method").agg(
        runs=("seed", "size"), seeds=("seed", "nunique"), **{c: (c, "mean") for c in COSTS.values()}
    )
    zero = {
        "runs": 0,
        "seeds": table["seed"].nunique(),
        **dict.fromkeys(COSTS.values(), np.nan),
        "trainable": 0.0,
    }
    out.loc[ZERO_SHOT] = pd.Series(zero)
    return out


def series(table: pd.DataFrame, method: str, metric: str) -> pd.Series:
    """One method's figures indexed by (instance, seed)."""
    rows = table[table["method"] == method]
    return rows.set_index(["instance", "seed"])[metric]
