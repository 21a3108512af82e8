"""`dataset=auto`: the format and folders read from the files (`samexp.data.detect`), said as the
explicit overrides so they can be pinned, then built by that format's own factory."""

from __future__ import annotations

import logging

from samexp.config.errors import DatasetError
from samexp.config.options import option, options
from samexp.data.detect import detect
from samexp.data.frame import Pipeline
from samexp.data.splits import DatasetSplits, TestFraction, TrainLimit

logger = logging.getLogger(__name__)


@option("dataset", "auto", provided=("pipeline",))
def auto_splits(
    root: str,
    pipeline: Pipeline,
    name: str | None = None,  # in run names; null: the root folder's name
    test_fraction: TestFraction = None,  # share held out as test when there is no test split
    prefer: str | None = None,  # the format to read when the folder reads as several
    limit: TrainLimit = None,  # train on a seeded few of the train images (`splits.carve_val`)
) -> DatasetSplits:
    """The splits of whatever `root` holds, loaded by the format detection recognised."""
    reading = detect(root, prefer)
    logger.info("dataset=auto read %s as %s; to pin it: %s",
                reading.root, reading.format, reading.line())  # fmt: skip
    for note in reading.notes:
        logger.warning("dataset=auto: %s", note)
    factory = options("dataset").get(reading.format)
    if factory is None:  # a family names a format no module registers: samexp's own bug
        raise DatasetError(f"dataset=auto read {root} as {reading.format}, which is not an option")
    accepted = set(factory.arguments())
    unknown = sorted(set(reading.arguments) - accepted)
    if unknown:  # detection and the format disagree: samexp's own bug, said plainly
        raise DatasetError(
            f"dataset=auto read {reading.root} as {reading.format} with "
            f"{', '.join(f'dataset.{k}' for k in unknown)}, which dataset={reading.format} does "
            f"not take; pin the format's own keys instead of dataset=auto"
        )
    given = {"name": name, "test_fraction": test_fraction, "limit": limit}
    given = {k: v for k, v in given.items() if k in accepted}
    return factory.obj(root=str(reading.root), pipeline=pipeline, **reading.arguments, **given)
