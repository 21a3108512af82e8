"""Driving the demo page in Chromium as a person does: shared by the browser test and the docs'
screenshot script. Playwright starts the system's Chromium (Debian's package): it never downloads
a browser."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

WAIT_MS = 60_000  # one answer on the tiny model takes well under a second; CI machines are slow


def chromium() -> str | None:
    """The system Chromium's executable, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    """A port nobody listens on now: servers never take a fixed one a developer may be using."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(playwright, executable: str):
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=["--no-sandbox"])  # fmt: skip


def open_demo(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.querySelector('#status')?.innerText.includes('Loaded')",
                           timeout=WAIT_MS)  # fmt: skip


def upload(page, path: Path) -> None:
    page.locator("#upload input[type=file]").set_input_files(str(path))


def wait_for_text(page, selector: str, text: str) -> str:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s)?.innerText.includes(t)", arg=[selector, text],
        timeout=WAIT_MS,
    )  # fmt: skip
    return page.locator(selector).inner_text()


def draw_box(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Click two corners on the displayed image, given as fractions of its width and height."""
    image = page.locator("#canvas img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    for fx, fy in (start, end):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_timeout(300)  # the first corner is drawn before the second click
