"""`python -m samexp.app [--run-id ID | --weights FILE]`: the demo on http://127.0.0.1:7860.

Plain argparse, not Hydra: the app has a handful of switches and no config groups to compose.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from samexp.config.errors import SamexpError
from samexp.server.procs import require_free


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m samexp.app", description=__doc__.splitlines()[0])
    p.add_argument("--run-id", help="the run shown first (default: the newest finished run)")
    p.add_argument("--weights", help="or an adapter .safetensors file shown first")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="the MLflow store to list runs from (default: samexp's, under $SAMEXP_HOME)",
    )
    p.add_argument("--checkpoint", help="the base model's official checkpoint, if not cached")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes "
                        "it to the network, with no login)")  # fmt: skip
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=20.0)
    p.add_argument("--max-megapixels", type=float, default=40.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    # gradio's own requests to the page it serves (startup-events, ...) are no news to the user
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the page
    try:
        # a busy port is said before gradio and the models load (seconds); launch checks again
        require_free(args.port, "the demo", "--port")
        from samexp.app.server import launch  # gradio loads in seconds: after the arguments

        launch(args)
    except SamexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
