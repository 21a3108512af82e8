"""The page: pick a run, pick or upload an image, click a box or points, and see zero-shot SAM and
the fine-tuned model side by side; tabs for automatic masks and learned classes. Every handler
answers with a message line instead of raising: a bad file or value is a sentence in the page."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from samexp.app import answers
from samexp.app.models import digest
from samexp.app.runs import RunChoice, example_images, finished_runs
from samexp.app.session import ClickMode, Models, Source, Tab
from samexp.app.uploads import read_upload
from samexp.errors import SamexpError
from samexp.predict.prompts import parse_prompts

log = logging.getLogger(__name__)

HELP = (
    "Pick a run (or load an adapter file), then an example or your own image. "
    "**Box:** click two opposite corners. **Points:** click on the object (positive) or beside "
    "it (negative). Both models answer each prompt; the image is encoded once, so later prompts "
    "take decoder time only."
)


@dataclass
class Settings:
    tracking_uri: str
    max_upload_mb: float = 20.0
    max_megapixels: float = 40.0
    examples: int = 12


def answered(n_outputs: int) -> Callable:
    """Wrap a handler whose last output is the message line: a samexp error becomes that message
    (other outputs unchanged); a bug is logged with its traceback and named in one line."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def handler(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SamexpError as e:
                message = f"⚠️ {e}"
            except Exception as e:  # noqa: BLE001 - the page must stay usable; the log has it
                log.exception("the demo failed in %s", fn.__name__)
                message = f"⚠️ internal error ({type(e).__name__}: {e}); the server log has details"
            return *([gr.skip()] * (n_outputs - 1)), message

        return handler

    return wrap


def api_errors(fn: Callable) -> Callable:
    """For API callers a samexp error is the call's error (gradio_client raises it, message
    included); the page's handlers show it in the message line instead."""

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SamexpError as e:
            raise gr.Error(str(e)) from None

    return handler


class Page:
    """The handlers, over the models every tab shares."""

    def __init__(self, models: Models, settings: Settings, initial: Source | None) -> None:
        self.models, self.settings, self.initial = models, settings, initial
        self.runs: dict[str, RunChoice] = {}

    # --- runs -------------------------------------------------------------------------------
    def run_choices(self) -> list[tuple[str, str]]:
        self.runs = {r.run_id: r for r in finished_runs(self.settings.tracking_uri)}
        return [(r.label(), r.run_id) for r in self.runs.values()]

    def default(self) -> Source | None:
        """What answers when nothing was picked: the app's --run-id/--weights, else the newest
        finished run."""
        if self.initial is not None:
            return self.initial
        if not self.runs:
            self.run_choices()
        return Source(run_id=next(iter(self.runs))) if self.runs else None

    def use(self, tab: Tab, source: Source) -> tuple[Tab, str, list[str], dict]:
        pair = self.models.get(source)
        tab.source, tab.last = source, None
        run = self.runs.get(source.run_id) if source.run_id else None
        tab.examples = ([str(p) for p in example_images(run, self.settings.tracking_uri,
                                                     self.settings.examples)] if run else [])  # fmt: skip
        adapter, base = pair.meta["adapter"], pair.meta["base"]
        lines = [f"**Loaded** {source}: {adapter.get('kind', '?')} adapter on {base.get('arch', '?')} "
                 f"({base.get('weights_id', '')}), on {pair.device}. "
                 + ("The image encoder is shared: one encoder pass per image for both models."
                    if pair.shared_encoder else "Each model encodes the image once.")]  # fmt: skip
        if pair.classes:
            lines.append(f"Learned classes: {', '.join(pair.classes)} (see the promptless tab).")
        if run and not tab.examples:
            lines.append(f"No test images found under {run.data_root} on this machine.")
        classes_note = ("" if pair.classes else
                        "This run was not trained with `prompt=class_tokens`: it has no learned "
                        "classes to segment without a prompt.")  # fmt: skip
        return tab, " ".join(lines), thumbnails(tab.examples), gr.update(value=classes_note)

    def pick_run(self, tab: Tab, run_id: str | None):
        if not run_id:
            raise SamexpError("pick a run first")
        return *self.use(tab, Source(run_id=run_id)), ""

    def pick_weights(self, tab: Tab, path: str):
        if not path or not path.strip():
            raise SamexpError("give the path of an adapter .safetensors file")
        return *self.use(tab, Source(weights=path.strip())), ""

    def on_load(self, tab: Tab):
        choices = self.run_choices()
        source = self.default()
        if source is None:
            note = (f"No finished run in {self.settings.tracking_uri} yet: train one "
                    "(`make smoke`), or load an adapter file below.")  # fmt: skip
            return tab, gr.update(choices=choices), note, [], gr.skip(), ""
        tab, status, examples, classes_note = self.use(tab, source)
        picked = gr.update(choices=choices, value=source.run_id)
        return tab, picked, status, examples, classes_note, ""

    # --- the image ----------------------------------------------------------------------------
    def _set_image(self, tab: Tab, image: np.ndarray, name: str):
        tab.image, tab.key, tab.name = image, digest(image), name
        tab.clicks, tab.last = type(tab.clicks)(), None
        h, w = image.shape[:2]
        return tab, image, None, None, f"{name}: {w}×{h}", ""

    def upload(self, tab: Tab, path: str | None):
        if path is None:
            return (gr.skip(),) * 6
        image = read_upload(path, self.settings.max_upload_mb, self.settings.max_megapixels)
        return self._set_image(tab, image, Path(path).name)

    def example(self, tab: Tab, evt: gr.SelectData):
        path = tab.examples[evt.index]
        image = read_upload(path, float("inf"), float("inf"))  # the run's own test images
        return self._set_image(tab, image, Path(path).name)

    # --- prompts -------------------------------------------------------------------------------
    def _pair(self, tab: Tab):
        if tab.source is None:
            raise SamexpError("pick a run or load an adapter file first")
        if tab.image is None:
            raise SamexpError("pick an example or upload an image first")
        return self.models.get(tab.source)

    def _answer(self, tab: Tab, alpha: float):
        prompts = tab.clicks.prompts()
        shown = answers.prompts_drawn(tab.image, prompts, tab.clicks.corner)
        if prompts is None:
            return tab, shown, gr.skip(), gr.skip(), gr.skip(), ""
        tab.last = answers.segment(self._pair(tab), tab.image, prompts, tab.key)
        zero, tuned, timing = self._pictures(tab, alpha)
        return tab, shown, zero, tuned, timing, ""

    def _pictures(self, tab: Tab, alpha: float):
        pictures, scores = tab.last.pictures(tab.image, alpha), tab.last.scores()
        labelled = [gr.update(value=pictures[m], label=f"{m} · predicted IoU "
                              + ", ".join(f"{s:.3f}" for s in scores[m]))
                    for m in answers.MODELS]  # fmt: skip
        timing = " · ".join(f"{m}: {tab.last.timings[m].text()}" for m in answers.MODELS)
        return *labelled, f"Time per answer: {timing}"

    def click(self, tab: Tab, mode: str, alpha: float, evt: gr.SelectData):
        self._pair(tab)
        x, y = evt.index
        tab.clicks.click(float(x), float(y), ClickMode(mode))
        return self._answer(tab, alpha)

    def clear(self, tab: Tab):
        tab.clicks, tab.last = type(tab.clicks)(), None
        return tab, tab.image, None, None, "", ""

    def opacity(self, tab: Tab, alpha: float):
        if tab.last is None:
            return (gr.skip(),) * 3 + ("",)
        return *self._pictures(tab, alpha)[:2], gr.skip(), ""

    # --- the other tabs ----------------------------------------------------------------------
    def auto(self, tab: Tab, points_per_side: int, alpha: float):
        pictures, lines = answers.auto_masks(self._pair(tab), tab.image, int(points_per_side),
                                             alpha, tab.key)  # fmt: skip
        return (*(gr.update(value=pictures[m], label=f"{m} · {lines[m]}") for m in answers.MODELS),
                "")  # fmt: skip

    def promptless(self, tab: Tab, alpha: float):
        pair = self._pair(tab)
        if not pair.classes:
            raise SamexpError(f"{tab.source} was not trained with prompt=class_tokens: it has no "
                              "learned classes (use the prompt or automatic-masks tab)")  # fmt: skip
        picture, line = answers.classes(pair, tab.image, alpha, tab.key)
        return picture, line, ""

    # --- the API (gradio_client) -------------------------------------------------------------
    def api_segment(self, image_path: str, box: str, points: str, labels: str, run_id: str,
                    weights: str, alpha: float):  # fmt: skip
        """One image and its prompts (JSON lists, original pixels) through both models."""
        source = Source(run_id or None, weights or None) if run_id or weights else self.default()
        if source is None:
            raise SamexpError(f"no finished run in {self.settings.tracking_uri}: give run_id or "
                              "weights")  # fmt: skip
        image = read_upload(image_path, self.settings.max_upload_mb, self.settings.max_megapixels)
        prompts = parse_prompts(box=_json(box, "box"), points=_json(points, "points"),
                                labels=_json(labels, "labels"))  # fmt: skip
        answer = answers.segment(self.models.get(source), image, prompts)
        pictures = answer.pictures(image, alpha)
        info = {"source": str(source), "predicted_iou": answer.scores(),
                "decode_ms": {m: round(t.decode_s * 1e3, 2) for m, t in answer.timings.items()},
                "encode_ms": {m: round(t.encode_s * 1e3, 2) for m, t in answer.timings.items()}}  # fmt: skip
        return pictures["zero-shot"], pictures["fine-tuned"], info


def thumbnails(paths: list[str], side: int = 160) -> list[tuple[np.ndarray, str]]:
    """Small copies for the gallery: the page never serves a file of the dataset's folder."""
    out = []
    for path in paths:
        try:
            image = read_upload(path, float("inf"), float("inf"))
        except SamexpError as e:
            log.warning("example %s skipped: %s", path, e)
            continue
        scale = side / max(image.shape[:2])
        h, w = (max(1, round(n * scale)) for n in image.shape[:2])
        out.append((cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), Path(path).name))
    return out


def _json(text: str | None, name: str):
    if text is None or not str(text).strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise SamexpError(f"{name}={text!r} is not JSON, e.g. [10, 20, 200, 180]") from None


def build(page: Page) -> gr.Blocks:
    """The Blocks; `python -m samexp.app` launches it."""
    with gr.Blocks(title="samexp demo", analytics_enabled=False) as blocks:
        tab = gr.State(Tab())
        gr.Markdown("# samexp: zero-shot SAM against your fine-tuned model\n" + HELP)
        with gr.Row():
            run = gr.Dropdown(label="Finished run (newest first)", choices=[], scale=4,
                              elem_id="run")  # fmt: skip
            refresh = gr.Button("↻ runs", scale=0)
        with gr.Row():
            weights = gr.Textbox(label="…or an adapter file (.safetensors)", scale=4,
                                 placeholder="/path/to/adapter.safetensors")  # fmt: skip
            load = gr.Button("Load file", scale=0)
        status = gr.Markdown(elem_id="status")
        message = gr.Markdown(elem_id="message")
        with gr.Row():
            upload = gr.File(label="Upload an image", type="filepath", elem_id="upload", scale=1)
            gallery = gr.Gallery(label="…or pick one of the run's test images", columns=8,
                                 height=170, allow_preview=False, object_fit="contain",
                                 elem_id="examples", scale=3)  # fmt: skip
        picked = gr.Markdown(elem_id="picked")
        with gr.Tabs():
            with gr.Tab("Box and points", id="prompt"):
                with gr.Row():
                    mode = gr.Radio([m.value for m in ClickMode], value=ClickMode.box.value,
                                    label="A click on the image adds", scale=3)  # fmt: skip
                    clear = gr.Button("Clear prompts", scale=0)
                    alpha = gr.Slider(0, 1, value=0.5, step=0.05, label="Mask opacity", scale=2)
                canvas = gr.Image(label="Your image: click it", interactive=False, format="png",
                                  elem_id="canvas", buttons=[], height=460)  # fmt: skip
                with gr.Row():
                    zero = gr.Image(label="zero-shot", interactive=False, format="png",
                                    elem_id="zero-shot", height=400)  # fmt: skip
                    tuned = gr.Image(label="fine-tuned", interactive=False, format="png",
                                     elem_id="fine-tuned", height=400)  # fmt: skip
                timing = gr.Markdown(elem_id="timing")
            with gr.Tab("Automatic masks", id="auto"):
                with gr.Row():
                    per_side = gr.Slider(4, 64, value=16, step=4, label="Points per side")
                    generate = gr.Button("Find every mask", elem_id="auto-run")
                with gr.Row():
                    auto_zero = gr.Image(label="zero-shot", interactive=False, format="png")
                    auto_tuned = gr.Image(label="fine-tuned", interactive=False, format="png")
            with gr.Tab("Promptless (learned classes)", id="classes"):
                classes_note = gr.Markdown()
                segment_classes = gr.Button("Segment every learned class", elem_id="classes-run")
                classes_image = gr.Image(label="fine-tuned, no prompt", interactive=False,
                                         format="png")  # fmt: skip
                classes_line = gr.Markdown()
        with gr.Row(visible=False):  # the API's own inputs and outputs (gradio_client)
            api_in = [gr.File(type="filepath", label="image"),
                      gr.Textbox(label="box", info="[x0, y0, x1, y1] in image pixels, or empty"),
                      gr.Textbox(label="points", info="[[x, y], ...] or empty"),
                      gr.Textbox(label="labels", info="[1, 0, ...]: 1 positive, 0 negative"),
                      gr.Textbox(label="run_id", info="empty: the app's run"),
                      gr.Textbox(label="weights", info="or an adapter file on the server"),
                      gr.Number(value=0.5, label="alpha")]  # fmt: skip
            api_out = [gr.Image(format="png", label="zero_shot"),
                       gr.Image(format="png", label="fine_tuned"), gr.JSON(label="info")]  # fmt: skip
            api_button = gr.Button()

        run_outputs = [tab, status, gallery, classes_note, message]
        image_outputs = [tab, canvas, zero, tuned, picked, message]
        answer_outputs = [tab, canvas, zero, tuned, timing, message]
        blocks.load(answered(6)(page.on_load), [tab], [tab, run, status, gallery, classes_note,
                                                       message])  # fmt: skip
        refresh.click(answered(2)(lambda: (gr.update(choices=page.run_choices()), "")), None,
                      [run, message])  # fmt: skip
        run.input(answered(5)(page.pick_run), [tab, run], run_outputs)
        load.click(answered(5)(page.pick_weights), [tab, weights], run_outputs)
        upload.upload(answered(6)(page.upload), [tab, upload], image_outputs)
        gallery.select(answered(6)(page.example), [tab], image_outputs)
        canvas.select(answered(6)(page.click), [tab, mode, alpha], answer_outputs)
        clear.click(answered(6)(page.clear), [tab], answer_outputs)
        alpha.release(answered(4)(page.opacity), [tab, alpha], [zero, tuned, timing, message])
        generate.click(answered(3)(page.auto), [tab, per_side, alpha],
                       [auto_zero, auto_tuned, message])  # fmt: skip
        segment_classes.click(answered(3)(page.promptless), [tab, alpha],
                              [classes_image, classes_line, message])  # fmt: skip
        api_button.click(api_errors(page.api_segment), api_in, api_out, api_name="segment")
    return blocks
