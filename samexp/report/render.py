"""The report as markdown (plots as files beside it) and as one self-contained HTML page (plots
inline as base64 PNG): the same heading, verdict, table and notes in both."""

from __future__ import annotations

import base64
import html
import math

from samexp.report.stats import Difference, p_text
from samexp.report.table import MethodRow, interval

NOTES = (
    "IoU and Dice: mean over test instances of each instance's mean over the seeds, with a 95% "
    "BCa bootstrap interval over instances (scipy.stats.bootstrap); seed sd: standard deviation "
    "of the per-seed mean IoU. Differences are paired by test instance and seed, with a "
    "two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon), uncorrected for multiple "
    "comparisons. Costs are means over a method's runs."
)


def header(rows: list[MethodRow]) -> list[str]:
    classes = sorted({c for r in rows for c in r.classes})
    return ["method", "seeds", "trainable", "IoU [95% CI]", "seed sd", "Dice [95% CI]",
            "ΔIoU vs zero-shot", "p", "ΔIoU vs best", "p", "s/step", "peak MB", "wall s",
            *(f"IoU {c}" for c in classes)]  # fmt: skip


def cells(row: MethodRow, classes: list[str]) -> list[str]:
    c = row.costs
    return [row.method, str(row.seeds), _number(c.get("trainable"), "{:,.0f}"), interval(row.iou),
            _number(row.seed_sd, "{:.3f}"), interval(row.dice),
            *_versus(row.vs_zero_shot, "—"), *_versus(row.vs_best, "(best)"),
            _number(c.get("s/step"), "{:.3g}"), _number(c.get("peak MB"), "{:,.0f}"),
            _number(c.get("wall s"), "{:,.1f}"),
            *(_number(row.classes.get(k), "{:.3f}") for k in classes)]  # fmt: skip


def markdown(title: str, verdict: str, rows: list[MethodRow], plots: dict[str, bytes]) -> str:
    classes = sorted({c for r in rows for c in r.classes})
    head = header(rows)
    lines = [f"# {title}", "", verdict, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             *("| " + " | ".join(cells(r, classes)) + " |" for r in rows),
             "", NOTES, *(f"\n![{stem}]({stem}.png)" for stem in plots)]  # fmt: skip
    return "\n".join(lines) + "\n"


def page(title: str, verdict: str, rows: list[MethodRow], plots: dict[str, bytes]) -> str:
    classes = sorted({c for r in rows for c in r.classes})
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header(rows))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in cells(r, classes)) + "</tr>"
                   for r in rows)  # fmt: skip
    images = "".join(
        f'<figure><img alt="{stem}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{stem}</figcaption></figure>"
        for stem, png in plots.items()
    )
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"verdict\">{html.escape(verdict)}</p><table><thead><tr>{th}</tr></thead>"
            f"<tbody>{body}</tbody></table><p class=\"notes\">{html.escape(NOTES)}</p>{images}"
            "</body></html>\n")  # fmt: skip


STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.verdict{font-weight:bold}"
    ".notes{color:#555;font-size:.9em;max-width:60em}figure{display:inline-block}"
)


def _versus(d: Difference | None, itself: str) -> list[str]:
    """A comparison's two cells, the difference and its p; `itself` where it is the reference."""
    return [itself, ""] if d is None else [interval(d, signed=True), _p(d.p)]


def _p(p: float) -> str:
    return p_text(p).removeprefix("p = ").replace("p < ", "< ")


def _number(value: float | None, form: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return form.format(value)
