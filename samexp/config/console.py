"""Where a plain command's (not Hydra's) log lines go: reports on stdout, warnings and errors on
stderr, so `inspect ROOT > report.txt` or `server status | grep` keep only the report."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def command_output(log: logging.Logger) -> Iterator[None]:
    """`log`'s records on the current sys.stdout (below WARNING) and sys.stderr, for this call
    only: a caller's logging (a test, a library user) is left as it was."""
    out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    before = log.handlers, log.level, log.propagate
    log.handlers, log.propagate = [out, err], False
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.handlers, log.propagate = before[0], before[2]
        log.setLevel(before[1])
