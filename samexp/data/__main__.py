"""`python -m samexp.data inspect ROOT [--prefer FORMAT]`: what `dataset=auto` reads in a folder,
as the explicit overrides, with counts per split, classes and mask values; nothing is trained.
A folder that reads as nothing or as several ways is one line on stderr (exit 2), no traceback."""

from __future__ import annotations

import argparse
import logging
import sys

from samexp.config.console import command_output
from samexp.config.errors import SamexpError

log = logging.getLogger("samexp.data")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m samexp.data", description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="print what dataset=auto reads in ROOT")
    inspect.add_argument("root", help="the dataset's folder")
    inspect.add_argument("--prefer", default=None,
                         help="the format to read when the folder reads as several "
                              "(dataset.prefer): coco, yolo, labelme, labelmap, folder")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from samexp.data.inspect import inspect_text  # after the arguments: --help stays instant

    with command_output(log):
        try:
            log.info("%s", inspect_text(args.root, args.prefer))
        except SamexpError as e:
            log.error("samexp.data inspect: %s", e)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
