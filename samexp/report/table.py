"""The report's one table, a row per method (zero-shot included, best first), and the verdict
sentence that reads it: which method is best, which cannot be told apart from it, and what the
best gains over zero-shot."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from samexp.report import stats
from samexp.report.collect import ZERO_SHOT, series
from samexp.report.stats import Difference, Estimate, p_text


@dataclass(frozen=True)
class MethodRow:
    method: str
    seeds: int
    iou: Estimate
    dice: Estimate
    seed_sd: float  # of the per-seed mean IoU
    vs_zero_shot: Difference | None  # IoU, this method - zero-shot; None for zero-shot
    vs_best: Difference | None  # IoU, this method - the best; None for the best itself
    costs: dict[str, float]  # trainable, s/step, peak MB, wall s
    classes: dict[str, float]  # mean IoU per category, when the data has several


def rows(figures: pd.DataFrame, costs: pd.DataFrame) -> list[MethodRow]:
    """Every method's row, highest mean IoU first."""
    categories = sorted(figures["category"].unique())
    zero_shot = series(figures, ZERO_SHOT, "iou")
    ious = {m: series(figures, m, "iou") for m in figures["method"].unique()}
    best = max(ious, key=lambda m: ious[m].mean())
    out = []
    for method, iou in ious.items():
        mine = figures[figures["method"] == method]
        classes = (mine.groupby("category")["iou"].mean().to_dict() if len(categories) > 1 else {})  # fmt: skip
        out.append(MethodRow(
            method, int(mine["seed"].nunique()), stats.estimate(iou),
            stats.estimate(series(figures, method, "dice")), stats.seed_sd(iou),
            None if method == ZERO_SHOT else stats.paired(iou, zero_shot),
            None if method == best else stats.paired(iou, ious[best]),
            costs.loc[method].to_dict() if method in costs.index else {}, classes,
        ))  # fmt: skip
    return sorted(out, key=lambda r: (r.vs_best is not None, -r.iou.mean))


def interval(e: Estimate | Difference, signed: bool = False) -> str:
    """`0.712 [0.680, 0.741]`; a single instance has no interval."""
    f = "{:+.3f}" if signed else "{:.3f}"
    if math.isnan(e.lo):
        return f.format(e.mean)
    return f"{f.format(e.mean)} [{f.format(e.lo)}, {f.format(e.hi)}]"


def verdict(table: list[MethodRow]) -> str:
    """What the table says in two sentences, in the words a user decides by."""
    best, others = table[0], table[1:]
    ties = [r for r in others if stats.indistinguishable(r.vs_best)]
    worse = [r for r in others if not stats.indistinguishable(r.vs_best)]
    said = f"{best.method} is best (IoU {interval(best.iou)})"
    if ties:
        names = ", ".join(f"{r.method} ({p_text(r.vs_best.p)})" for r in ties)
        said += f"; {names} cannot be told apart from it"
    if worse:
        said += f"; {_count(worse)} worse (each p < {stats.ALPHA:g})"
    said += "."
    if best.method != ZERO_SHOT:
        gain = best.vs_zero_shot
        if stats.indistinguishable(gain):
            said += (f" {best.method} cannot be told apart from zero-shot "
                     f"({interval(gain, signed=True)} IoU, {p_text(gain.p)}).")  # fmt: skip
        else:
            said += (f" {best.method} changes IoU by {interval(gain, signed=True)} over "
                     f"zero-shot ({p_text(gain.p)}).")  # fmt: skip
    n = max((r.vs_best.n for r in others if r.vs_best is not None), default=0)
    if others and stats.smallest_p(n) >= stats.ALPHA:
        said += (f" With {n} test instance{'s' * (n != 1)} no paired test can reach "
                 f"p < {stats.ALPHA:g} (the smallest possible p is {stats.smallest_p(n):.3g}), and "
                 "the intervals rest on as few images: add test images to tell methods apart.")  # fmt: skip
    return said


def _count(rows: list[MethodRow]) -> str:
    if len(rows) <= 3:
        names = [r.method for r in rows]
        return (" and ".join(names) if len(names) < 3 else f"{names[0]}, {names[1]} and {names[2]}") + (" is" if len(names) == 1 else " are")  # fmt: skip
    return f"the other {len(rows)} methods are"
