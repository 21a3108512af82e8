"""What the page does when a person acts: pick a run, pick or upload an image, click a box or
points, move the opacity, run a tab. Every handler answers with a message line instead of raising:
a bad file or value is a sentence in the page, never a traceback."""

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
from samexp.app.session import ClickMode, Clicks, Models, Source, Tab
from samexp.app.uploads import read_upload
from samexp.config.errors import SamexpError
from samexp.predict.prompts import coordinates, echo, parse_prompts

log = logging.getLogger(__name__)


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
            # the caller's mistake, said to the caller: no traceback in the server's log
            raise gr.Error(str(e), print_exception=False) from None

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
        try:
            tab, status, examples, classes_note = self.use(tab, source)
        except SamexpError as e:  # the list still fills: another run may load
            return tab, gr.update(choices=choices), "", [], gr.skip(), f"⚠️ {e}"
        picked = gr.update(choices=choices, value=source.run_id)
        return tab, picked, status, examples, classes_note, ""

    # --- the image ----------------------------------------------------------------------------
    def _set_image(self, tab: Tab, image: np.ndarray, name: str):
        tab.image, tab.key, tab.name = image, digest(image), name
        tab.clicks, tab.last = Clicks(), None
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
        # the browser's coordinates are checked like any prompt before the tab keeps them: a
        # refused click leaves the prompts as they were
        x, y = coordinates("the click", evt.index, 2, "[x, y]")
        tab.clicks.click(x, y, ClickMode(mode))
        return self._answer(tab, alpha)

    def clear(self, tab: Tab):
        tab.clicks, tab.last = Clicks(), None
        return tab, tab.image, None, None, "", ""

    def opacity(self, tab: Tab, alpha: float):
        if tab.last is None:
            return (gr.skip(),) * 3 + ("",)
        return *self._pictures(tab, alpha)[:2], gr.skip(), ""

    # --- the other tabs ----------------------------------------------------------------------
    def auto(self, tab: Tab, points_per_side: int, alpha: float):
        pictures, lines = answers.auto_masks(
            self._pair(tab), tab.image, int(points_per_side), alpha
        )
        return (*(gr.update(value=pictures[m], label=f"{m} · {lines[m]}") for m in answers.MODELS),
                "")  # fmt: skip

    def promptless(self, tab: Tab, alpha: float):
        picture, line = answers.classes(self._pair(tab), tab.image, alpha, tab.key)
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
        raise SamexpError(f"{name}={echo(text)} is not JSON, e.g. [10, 20, 200, 180]") from None
    except RecursionError:  # json gives up on a list nested ~1000 deep; no prompt nests past 2
        raise SamexpError(
            f"{name} is nested too deeply to be a prompt, e.g. [10, 20, 200, 180]"
        ) from None
