"""The demo as a person uses it, in a real browser (Debian's Chromium through Playwright): load the
page, upload a photo, draw a box, and see zero-shot SAM and the fine-tuned model side by side; a
file that is not an image gets a sentence in the page. The page is kept as a screenshot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.app.conftest import App, Store
from tests.app.page import (
    WAIT_MS,
    chromium,
    draw_box,
    launch,
    open_demo,
    upload,
    wait_for_text,
)
from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a server and a browser

ARTIFACTS = Path(os.environ.get("SAMEXP_TEST_ARTIFACTS", REPO / "test-artifacts"))


@pytest.fixture(scope="module")
def page():
    executable = chromium()
    if executable is None:
        pytest.skip("no system Chromium: `make chromium` installs Debian's (CI always has it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright, executable)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        yield page
        browser.close()


def test_a_drawn_box_shows_both_masks_side_by_side_and_no_error(
    page, app: App, store: Store, rings_root: Path
):
    open_demo(page, app.url)
    assert store.run_id in page.locator("#status").inner_text()
    upload(page, rings_root / "test" / "images" / "ring_test_1.jpg")
    wait_for_text(page, "#picked", "ring_test_1.jpg: 1024×1024")
    draw_box(page, (0.05, 0.3), (0.7, 0.65))
    timing = wait_for_text(page, "#timing", "Time per answer")
    assert "zero-shot" in timing and "fine-tuned" in timing and "ms" in timing
    for model in ("zero-shot", "fine-tuned"):
        picture = page.locator(f"#{model} img")
        picture.wait_for(state="visible", timeout=WAIT_MS)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                               arg=picture.element_handle(), timeout=WAIT_MS)  # fmt: skip
        assert picture.evaluate("img => img.naturalWidth") == 1024  # the answer, at full size
        assert "predicted IoU" in page.locator(f"#{model}").inner_text()
    assert page.locator("#message").inner_text().strip() == ""
    assert not page.locator(".toast-body").count()  # gradio's error pop-up
    assert page.errors == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)


def test_an_upload_that_is_not_an_image_gets_a_message_in_the_page(page, app: App, tmp_path: Path):
    open_demo(page, app.url)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    upload(page, notes)
    message = wait_for_text(page, "#message", "notes.txt")
    assert "is not an image this app can read" in message
    assert "Traceback" not in page.content()


def test_an_upload_over_the_size_limit_gets_a_message_in_the_page(page, app: App, tmp_path: Path):
    open_demo(page, app.url)  # started with --max-upload-mb 2
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(3_000_000))
    upload(page, big)
    toast = page.locator(".toast-body").first  # gradio refuses it before it reaches the server
    toast.wait_for(timeout=WAIT_MS)
    assert 'exceed the maximum allowed size of 2.0 Mb: "big.jpg"' in toast.inner_text()
    assert "Traceback" not in page.content()
