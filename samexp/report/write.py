"""A study's report from its runs: collected, summarised, plotted, written to a folder and
logged to the study's parent run under `report/`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from samexp.config.paths import default_tracking_uri, samexp_home
from samexp.report import collect, plots, render, table
from samexp.tracking.finished_runs import log_report, select

log = logging.getLogger(__name__)

FOLDER = "report"  # the parent run's artifact folder, and the default folder's name


def write_report(name: str, out: str | Path | None = None, tracking_uri: str | None = None,
                 log_to_run: bool = True) -> Path:  # fmt: skip
    """Write `report.html`, `report.md` and the plots of the runs `name` selects (a parent run
    id, a study or sweep name, an experiment) into `out` (default: <samexp home>/reports/<name>)
    and log them to the parent run. Returns the HTML file."""
    uri = tracking_uri or default_tracking_uri()
    chosen = select(uri, name)
    runs = collect.one_per_seed(chosen.runs)
    rows = table.rows(collect.figures(runs), collect.costs(runs))
    verdict = table.verdict(rows)
    pngs = plots.pareto_plots(rows)
    title = f"Which adaptation works best: {name}"
    folder = Path(out) if out else samexp_home() / "reports" / re.sub(r"[^\w.-]", "_", name)
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "report.html", folder / "report.md"]
    files[0].write_text(render.page(title, verdict, rows, pngs), encoding="utf-8")
    files[1].write_text(render.markdown(title, verdict, rows, pngs), encoding="utf-8")
    for stem, png in pngs.items():
        (folder / f"{stem}.png").write_bytes(png)
        files.append(folder / f"{stem}.png")
    log.info("%s (%d runs, %s): %s", name, len(runs), chosen.what, verdict)
    if log_to_run and chosen.parent_run_id:
        log_report(uri, chosen.parent_run_id, files, FOLDER)
        log.info("logged to run %s under %s/", chosen.parent_run_id, FOLDER)
    log.info("wrote %s", files[0])
    return files[0]
