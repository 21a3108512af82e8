"""Start the page: the models of the first run loaded before the port opens (a wrong run id or a
missing checkpoint is a startup error, not a broken page), gradio bound to 127.0.0.1 unless told."""

from __future__ import annotations

import argparse
import logging

import gradio as gr

from samexp.app.handlers import Page, Settings
from samexp.app.session import Models, Source
from samexp.app.ui import build
from samexp.config.paths import default_tracking_uri
from samexp.server.procs import require_free

log = logging.getLogger(__name__)

# system fonts: the default theme's Google Fonts would be fetched by every browser that opens it
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def create(run_id: str | None = None, weights: str | None = None, tracking_uri: str | None = None,
           checkpoint: str | None = None, device: str = "auto", max_upload_mb: float = 20.0,
           max_megapixels: float = 40.0) -> tuple[gr.Blocks, Page]:  # fmt: skip
    """The page and its handlers; the first source's models are loaded here."""
    uri = tracking_uri or default_tracking_uri()
    models = Models(uri, checkpoint, device, attention="auto")
    initial = Source(run_id, weights) if (run_id or weights) else None
    if initial is not None:
        models.get(initial)
    page = Page(models, Settings(uri, max_upload_mb, max_megapixels), initial)
    return build(page).queue(default_concurrency_limit=1), page


def launch(args: argparse.Namespace) -> None:
    blocks, _ = create(args.run_id, args.weights, args.tracking_uri, args.checkpoint, args.device,
                       args.max_upload_mb, args.max_megapixels)  # fmt: skip
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this machine can use the app", args.host)
    try:
        # quiet: gradio's banner would end with its `share=True` hint, a public tunnel this local
        # demo never wants; the address is said here instead
        blocks.launch(server_name=args.host, server_port=args.port, theme=THEME, ssr_mode=False,
                      max_file_size=f"{args.max_upload_mb:g}mb", show_error=False,
                      footer_links=["api"], quiet=True, prevent_thread_lock=True)  # fmt: skip
    except OSError:  # gradio's "Cannot find empty port": taken while the models loaded
        require_free(args.port, "the demo", "--port")
        raise
    log.info("the demo answers on %s (Ctrl-C stops it)", blocks.local_url)
    blocks.block_thread()
