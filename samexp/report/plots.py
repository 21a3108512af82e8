"""Pareto plots: IoU (mean and 95% interval) against a cost, trainable parameters or training
time, with the methods no other beats on both drawn as a front and zero-shot as a band."""

from __future__ import annotations

import io
import math

from samexp.report.collect import ZERO_SHOT
from samexp.report.table import MethodRow

# the report's plots: file stem -> (cost column, axis label, log scale): parameter counts span
# orders of magnitude (a bias vector to a whole encoder), training times rarely do
# label offsets (points) cycled along the x axis: methods that tie near zero-shot sit on one line,
# and labels at one height would print over each other
LABEL_OFFSETS = ((4, 6), (4, -13), (4, 16), (4, -23))
PLOTS = {
    "iou_vs_params": ("trainable", "trainable parameters", True),
    "iou_vs_time": ("wall s", "training wall time (s)", False),
}


def front(points: list[tuple[float, float, str]]) -> list[str]:
    """The methods on the Pareto front of (cost, IoU): none is both cheaper and better."""
    kept, best = [], -math.inf
    for _, iou, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if iou > best:
            kept.append(name)
            best = iou
    return kept


def pareto_png(table: list[MethodRow], cost: str, label: str, log_x: bool) -> bytes | None:
    """One plot as PNG bytes; None when no method logged this cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r.costs.get(cost, math.nan), r) for r in table if r.method != ZERO_SHOT]
    points = [(c, r) for c, r in points if not math.isnan(c) and c > 0]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    zero = next((r for r in table if r.method == ZERO_SHOT), None)
    if zero is not None:
        ax.axhline(zero.iou.mean, color="grey", linestyle="--", label=ZERO_SHOT)
        if not math.isnan(zero.iou.lo):
            ax.axhspan(zero.iou.lo, zero.iou.hi, color="grey", alpha=0.15)
    for i, (c, r) in enumerate(sorted(points, key=lambda p: p[0])):
        lo, hi = (r.iou.mean - r.iou.lo, r.iou.hi - r.iou.mean) if not math.isnan(r.iou.lo) else (0, 0)  # fmt: skip
        ax.errorbar(c, r.iou.mean, yerr=[[lo], [hi]], fmt="o", capsize=3)
        ax.annotate(r.method, (c, r.iou.mean), textcoords="offset points",
                    xytext=LABEL_OFFSETS[i % len(LABEL_OFFSETS)], fontsize=7)  # fmt: skip
    on_front = set(front([(c, r.iou.mean, r.method) for c, r in points]))
    line = sorted((c, r.iou.mean) for c, r in points if r.method in on_front)
    ax.plot([x for x, _ in line], [y for _, y in line], drawstyle="steps-post", color="C3",
            alpha=0.6, marker="o", markerfacecolor="none", markersize=12, label="Pareto front")  # fmt: skip
    costs = [c for c, _ in points]
    if log_x or max(costs) / min(costs) >= 100:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test IoU (mean, 95% CI)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def pareto_plots(table: list[MethodRow]) -> dict[str, bytes]:
    """Each plot of PLOTS that has data, by file stem."""
    made = {stem: pareto_png(table, *plot) for stem, plot in PLOTS.items()}
    return {stem: png for stem, png in made.items() if png is not None}
