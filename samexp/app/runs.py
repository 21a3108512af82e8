"""The runs the demo offers: the finished training runs of an MLflow store, newest first, labelled
with what a person picks by (adapter, dataset, final test IoU/Dice), and the test images each run
was evaluated on, found again on disk as examples."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from samexp.config.errors import SamexpError
from samexp.config.options import by_target
from samexp.config.paths import dataset_name
from samexp.data.base import IMAGE_EXTENSIONS
from samexp.tracking import store

log = logging.getLogger(__name__)

PER_IMAGE = "metrics/per_image.json"  # the runner's per-image table: names the test images
MAX_FILES_WALKED = 50_000  # looking for examples never reads a whole disk


@dataclass(frozen=True)
class RunChoice:
    run_id: str
    name: str
    adapter: str
    dataset: str
    model: str
    iou: float | None
    dice: float | None
    started: datetime
    data_root: str | None

    def label(self) -> str:
        """One line of the picker: what was trained on what, how well, when."""
        score = " · ".join(
            f"{name} {value:.3f}" for name, value in (("IoU", self.iou), ("Dice", self.dice))
            if value is not None
        )  # fmt: skip
        parts = [self.name, f"{self.adapter} on {self.dataset} ({self.model})", score,
                 self.started.strftime("%Y-%m-%d %H:%M"), self.run_id[:8]]  # fmt: skip
        return " · ".join(p for p in parts if p)


def finished_runs(tracking_uri: str, limit: int = 200) -> list[RunChoice]:
    """Training runs that ended well (FINISHED, samexp's state COMPLETE, a final test IoU), newest
    first. Sweep trials that were pruned or failed, and runs still going, are not offered; a
    store that does not exist lists nothing and is not created."""
    if not store.exists(tracking_uri):
        return []
    runs = store.completed_runs(tracking_uri, limit)
    return [choice for run in runs if (choice := _choice(run)) is not None]


def _choice(run) -> RunChoice | None:
    params, metrics = run.data.params, run.data.metrics
    target = params.get("adapter._target_")
    if target is None or "final/test/iou" not in metrics:
        return None  # not a training run (an evaluation of a saved model has no adapter config)
    option = by_target("adapter", target)
    adapter = option.name if option else target.rsplit(".", 1)[-1]
    if "adapter.rank" in params:
        adapter += f" r{params['adapter.rank']}"
    root = params.get("dataset.root")
    name = params.get("dataset.name")
    dataset = dataset_name(None if name in (None, "None") else name, root) if root else "?"
    return RunChoice(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id[:8],
        adapter=adapter,
        dataset=dataset,
        model=params.get("model.arch", "?"),
        iou=metrics.get("final/test/iou"),
        dice=metrics.get("final/test/dice"),
        started=datetime.fromtimestamp(run.info.start_time / 1000),
        data_root=root,
    )


def example_images(run: RunChoice, tracking_uri: str, limit: int = 12) -> list[Path]:
    """Up to `limit` of the run's test images, found by name under its dataset root on this
    machine. Empty (and logged) when the root is elsewhere: examples are a convenience."""
    if not run.data_root or not Path(run.data_root).is_dir():
        log.info("run %s: its dataset root %s is not on this machine; no examples", run.run_id,
                 run.data_root)  # fmt: skip
        return []
    try:
        table = json.loads(store.run_file(run.run_id, PER_IMAGE, tracking_uri).read_text("utf-8"))
        names = {row["name"] for row in table if isinstance(row, dict) and "name" in row}
    except (SamexpError, OSError, ValueError, TypeError) as e:
        log.info("run %s: no test image list (%s); no examples", run.run_id, e)
        return []
    found: dict[str, Path] = {}
    for walked, path in enumerate(_files(Path(run.data_root))):
        if walked >= MAX_FILES_WALKED or len(found) == len(names):
            break
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        name = path.name if path.name in names else path.stem  # formats name samples either way
        if name in names:
            found.setdefault(name, path)
    return [found[n] for n in sorted(found)][:limit]


def _files(root: Path):
    """Files under `root`, image folders first (a mask folder holds files of the same names)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort(key=lambda d: ("mask" in d.lower(), d))
        for name in sorted(files):
            yield Path(folder) / name
