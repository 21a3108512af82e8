"""The page's handlers, called as gradio calls them: every outcome a person can cause is a line
in the page (the last output), never an exception."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from samexp.app.handlers import Page, Settings, answered
from samexp.app.session import ClickMode, Models, Tab


@pytest.fixture
def page(tmp_path: Path) -> Page:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    return Page(Models(uri, None, "cpu", "auto"), Settings(uri), initial=None)


def _click(x: float, y: float) -> gr.SelectData:
    return gr.SelectData(None, {"index": [x, y], "value": None})


def test_an_adapter_file_loads_and_says_what_it_is_and_what_it_learned(page: Page, decoder_file):
    tab, status, examples, classes_note, message = answered(5)(page.pick_weights)(
        Tab(), str(decoder_file)
    )
    assert message == ""
    assert f"file {decoder_file}: decoder adapter on tiny" in status
    assert "one encoder pass per image for both models" in status
    assert "Learned classes: ring, stone" in status
    assert examples == [] and classes_note["value"] == ""


def test_a_missing_adapter_file_is_a_line_in_the_page(page: Page, tmp_path: Path):
    *_, message = answered(5)(page.pick_weights)(Tab(), str(tmp_path / "nope.safetensors"))
    assert message.startswith("⚠️ weights=") and "no such file" in message


def test_clicks_before_a_model_or_an_image_ask_for_them(page: Page, decoder_file):
    click = answered(6)(page.click)
    *_, message = click(Tab(), ClickMode.box.value, 0.5, _click(1, 1))
    assert message == "⚠️ pick a run or load an adapter file first"
    tab, *_ = answered(5)(page.pick_weights)(Tab(), str(decoder_file))
    *_, message = click(tab, ClickMode.box.value, 0.5, _click(1, 1))
    assert message == "⚠️ pick an example or upload an image first"


def test_two_clicks_answer_with_both_pictures_and_the_time_per_answer(page: Page, decoder_file):
    tab, *_ = answered(5)(page.pick_weights)(Tab(), str(decoder_file))
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    page._set_image(tab, image, "noise.png")
    first = answered(6)(page.click)(tab, ClickMode.box.value, 0.5, _click(10, 10))
    assert first[2] is not None and first[-1] == ""  # half a box: nothing to answer yet
    tab, shown, zero, tuned, timing, message = answered(6)(page.click)(
        tab, ClickMode.box.value, 0.5, _click(100, 80)
    )
    assert message == "" and tab.clicks.box == [10, 10, 100, 80]
    assert zero["value"].shape == tuned["value"].shape == image.shape
    assert zero["label"].startswith("zero-shot · predicted IoU ")
    assert timing.startswith("Time per answer: zero-shot: ") and "fine-tuned" in timing


def test_the_promptless_tab_of_a_run_without_learned_classes_says_why(page: Page, lora_file):
    tab, *_ = answered(5)(page.pick_weights)(Tab(), str(lora_file))
    page._set_image(tab, np.zeros((32, 32, 3), np.uint8), "black.png")
    *_, message = answered(3)(page.promptless)(tab, 0.5)
    assert "was not trained with prompt=class_tokens" in message


def test_a_bug_in_a_handler_is_one_line_in_the_page_and_a_traceback_in_the_log(caplog):
    def broken():
        raise ZeroDivisionError("division by zero")

    (message,) = answered(1)(broken)()
    assert message.startswith("⚠️ internal error (ZeroDivisionError: division by zero)")
    assert "Traceback" in caplog.text
