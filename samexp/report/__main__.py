"""`python -m samexp.report NAME [--out DIR] [--tracking-uri URI]`: the report of the runs NAME
selects (a study's name, its parent run's id or name, or an experiment), as report.html and
report.md in a folder and on the parent run; a mistake is one line on stderr (exit 2)."""

from __future__ import annotations

import argparse
import logging
import sys

from samexp.config.console import command_output
from samexp.config.errors import SamexpError

log = logging.getLogger("samexp")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m samexp.report", description=__doc__.splitlines()[0])
    p.add_argument("name", help="a study name (study.name), a sweep parent run's id or name, or "
                                "an MLflow experiment (tracking.experiment)")  # fmt: skip
    p.add_argument("--out", default=None, help="the folder to write (default: <samexp home>/reports/NAME)")  # fmt: skip
    p.add_argument("--tracking-uri", default=None, help="the MLflow store (default: the one under $SAMEXP_HOME)")  # fmt: skip
    p.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from samexp.report.write import write_report  # after the arguments: --help stays instant

    with command_output(log):
        try:
            write_report(args.name, args.out, args.tracking_uri, log_to_run=not args.no_log)
        except SamexpError as e:
            log.error("samexp.report: %s", e)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
