"""The finished runs a report is about, chosen by one name: a sweep's or study's parent run (its
id, its run name or its study name) or an MLflow experiment (its name). Plain values come out:
each run's params, metrics, per-image figures and resolved config, read through `store`."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from samexp.config.errors import SamexpError
from samexp.tracking import store
from samexp.tracking.names import PARENT, STATE, STUDY, SWEEP_KEY

log = logging.getLogger(__name__)

# what every run logs (samexp.runner): the per-instance figures a report rests on, and its config
PER_IMAGE = "metrics/per_image.json"
CONFIG = "config.yaml"


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    per_image: list[dict]  # one per test instance: name, instance, baseline_/final_ iou and dice
    config: str | None  # the resolved config.yaml the run logged


@dataclass(frozen=True)
class Selection:
    what: str  # how the name was understood, for the report's heading
    parent_run_id: str | None  # where the report is logged; None for a whole experiment
    runs: list[FinishedRun]
    left_out: dict[str, int] = field(default_factory=dict)  # why -> how many runs


def select(tracking_uri: str, name: str) -> Selection:
    """The finished runs under the parent run `name` (an id, a run name or a study name), else of
    the experiment `name`. None found is one line saying what was looked for."""
    if not store.exists(tracking_uri):
        raise SamexpError(f"no MLflow store at {tracking_uri} (give --tracking-uri)")
    parent = _parent(tracking_uri, name)
    if parent is not None:
        experiment = parent.info.experiment_id
        children = store.search(tracking_uri, f"tags.`{PARENT}` = '{parent.info.run_id}'", [experiment])  # fmt: skip
        what = f"runs under {parent.info.run_name} ({parent.info.run_id})"
        return _finished(tracking_uri, what, parent.info.run_id, children, name)
    experiment = store.experiment_id(tracking_uri, name)
    if experiment is not None:
        runs = [r for r in store.search(tracking_uri, "", [experiment]) if SWEEP_KEY not in r.data.tags]  # fmt: skip
        return _finished(tracking_uri, f"runs of experiment {name}", None, runs, name)
    raise SamexpError(
        f"{name!r} is no parent run id, sweep or study name, nor experiment in {tracking_uri}: "
        "give a study's name (study.name), its parent run's id or name, or tracking.experiment"
    )


def _parent(tracking_uri: str, name: str):
    """The parent run `name` stands for: by id, by study (newest first) or by run name."""
    found = store.find_run(tracking_uri, name) if name.isalnum() else None
    if found is not None or "'" in name:
        return found
    for filter_string in (f"tags.`{SWEEP_KEY}` = 'study:{name}'", f"tags.`{STUDY}` = '{name}'",
                          f"attributes.run_name = '{name}' and tags.`{SWEEP_KEY}` != ''"):  # fmt: skip
        runs = store.search(tracking_uri, filter_string)
        if runs:
            return runs[-1]
    return None


def _finished(tracking_uri: str, what: str, parent_id: str | None, runs: list, name: str) -> Selection:  # fmt: skip
    kept, left_out = [], Counter()
    for run in runs:
        state = run.data.tags.get(STATE, run.info.status)
        if run.info.status != "FINISHED" or state != "COMPLETE":
            left_out[f"not finished ({state})"] += 1
            continue
        rows = store.artifact_text(tracking_uri, run.info.run_id, PER_IMAGE)
        if rows is None:
            left_out[f"without {PER_IMAGE}"] += 1
            continue
        kept.append(FinishedRun(
            run.info.run_id, run.info.run_name, dict(run.data.params), dict(run.data.metrics),
            json.loads(rows), store.artifact_text(tracking_uri, run.info.run_id, CONFIG),
        ))  # fmt: skip
    if left_out:
        log.warning("%s: left out %s", what, ", ".join(f"{n} {why}" for why, n in left_out.items()))  # fmt: skip
    if not kept:
        why = f" ({', '.join(f'{n} {w}' for w, n in left_out.items())})" if left_out else ""
        raise SamexpError(f"{name!r}: no finished run with {PER_IMAGE} among the {what}{why}")
    return Selection(what, parent_id, kept, dict(left_out))


def log_report(tracking_uri: str, run_id: str, files: list, folder: str) -> None:
    """The report's files onto the parent run (under `folder`), which may be finished already."""
    store.record(store.client(tracking_uri), run_id, files=files, folder=folder)
