"""Prompts a model cannot take and commands pointed where they cannot work: each is refused in one
line before any model runs, and nothing is written where the output was to go.

A NaN compares false with every bound, so it used to pass the bounds check: predict wrote a mask
and then failed drawing the box. Every prompt now passes one check of its numbers
(`samexp.predict.prompts.coordinates`) wherever it enters: the command line, a prompts file, a
click on the demo page, the demo's /segment API. Each row names the path, what is given there and
the message shown now; command-line rows run the command as users do (a subprocess: `slow`, but
for the demo's, which is refused before its imports), the others call the same handlers in-process.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest

from samexp.adapters.io import save_adapter
from samexp.adapters.lora import LoraAdapter
from samexp.app.handlers import Page, Settings, answered, api_errors
from samexp.app.session import ClickMode, Models, Tab
from samexp.config.errors import SamexpError
from samexp.config.schema import Device
from samexp.export import export
from samexp.models.build import build_tiny
from samexp.predict import PredictConfig, predict
from samexp.predict.config import PromptConfig
from tests.conftest import REPO
from tests.predict.test_cli import one_error_line, samexp_predict

DEEP = 5000  # levels of nesting: json and repr give up past ~1000


@dataclass
class Env:
    inputs: Path  # the adapter file, the images, the prompts files
    out: Path  # where every command is told to write: must stay empty
    weights: Path
    image: Path  # 80×60
    thin: Path  # 20000×1
    page: Page  # the demo's handlers, the adapter loaded


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    inputs = tmp_path_factory.mktemp("inputs")
    base = build_tiny(seed=0)
    adapter = LoraAdapter(rank=4)
    adapter.apply(base.sam)
    weights = save_adapter(inputs / "lora.safetensors", base, adapter)
    image, thin = inputs / "img.png", inputs / "thin.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (60, 80, 3), np.uint8))
    cv2.imwrite(str(thin), np.full((1, 20000, 3), 128, np.uint8))
    uri = f"sqlite:///{inputs}/mlruns/mlflow.db"
    page = Page(Models(uri, None, "cpu", "auto"), Settings(uri), initial=None)
    answered(5)(page.pick_weights)(Tab(), str(weights))  # the models load once for the module
    return Env(inputs, tmp_path_factory.mktemp("work") / "out", weights, image, thin, page)


# --- the paths, each returning the one line it shows -------------------------------------------
def predict_cli(env: Env, *overrides: str) -> str:
    result = samexp_predict(env.inputs, f"weights={env.weights}", f"image={env.image}",
                            f"out={env.out}", "device=cpu", *overrides)  # fmt: skip
    return one_error_line(result).split(" - ", 1)[1]


def predict_call(env: Env, **fields) -> str:
    cfg = PredictConfig(weights=str(env.weights), out=str(env.out), device=Device.cpu, **fields)
    with pytest.raises(SamexpError) as e:
        predict(cfg)
    return str(e.value)


def prompt(**given) -> Callable[[Env], str]:
    return lambda env: predict_call(env, image=str(env.image), prompt=PromptConfig(**given))


def prompts_file(text: str) -> Callable[[Env], str]:
    """A prompts file as written (JSON allows NaN, Infinity and 1e999, which reads as inf)."""

    def run(env: Env) -> str:
        path = env.inputs / "prompts.json"
        path.write_text(text)
        return predict_call(env, image=str(env.image), prompts=str(path))

    return run


def demo_click(index, image: str = "image") -> Callable[[Env], str]:
    """A positive point clicked on the page at `index` (what the browser sends as the position)."""

    def run(env: Env) -> str:
        tab, *_ = answered(5)(env.page.pick_weights)(Tab(), str(env.weights))
        answered(6)(env.page.upload)(tab, str(getattr(env, image)))
        event = gr.SelectData(None, {"index": index, "value": None})
        *_, message = answered(6)(env.page.click)(tab, ClickMode.positive.value, 0.5, event)
        assert tab.last is None  # no answer
        if image == "image":  # a refused click is not kept (on the thin image the click is fine)
            assert tab.clicks.points == []
        return message

    return run


def api(image: str = "image", **text: str) -> Callable[[Env], str]:
    """POST /segment as gradio_client sends it: the prompts as JSON text."""

    def run(env: Env) -> str:
        fields = {"box": "", "points": "", "labels": "", **text}
        with pytest.raises(gr.Error) as e:
            api_errors(env.page.api_segment)(str(getattr(env, image)), *fields.values(),
                                             "", str(env.weights), 0.5)  # fmt: skip
        return e.value.message

    return run


def export_to(out: Callable[[Env], Path]) -> Callable[[Env], str]:
    def run(env: Env) -> str:
        with pytest.raises(SamexpError) as e:
            export(weights=str(env.weights), out=str(out(env)))
        return str(e.value)

    return run


def export_cli_to_the_out_folder(env: Env) -> str:
    env.out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "samexp.export", f"hydra.run.dir={env.inputs}/hydra",
         f"weights={env.weights}", f"out={env.out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return one_error_line(result).split(" - ", 1)[1]


def demo_on_a_busy_port(env: Env) -> str:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "samexp.app", "--port", str(port), "--weights", str(env.weights)],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line.replace(str(port), "<port>")


NOT_FINITE = "is not finite: {form} must be pixel coordinates, never NaN or infinity"
BOX, POINT = NOT_FINITE.format(form="[x0, y0, x1, y1]"), NOT_FINITE.format(form="[x, y]")
THIN = ("the image is 20000×1 pixels: at the model's 256 px input its shorter side would be 0 "
        "pixels; crop or pad it to a side ratio of at most 512:1")  # fmt: skip
NESTED = "[" * DEEP + "1" + "]" * DEEP


def nested(depth: int) -> list:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value  # type: ignore[return-value]


CASES = [
    # non-finite prompts, wherever they enter
    pytest.param(lambda env: predict_cli(env, "prompt.box=[nan,0,10,10]"),
                 f"prompt.box=[nan, 0, 10, 10] {BOX}", id="predict CLI: NaN in prompt.box",
                 marks=pytest.mark.slow),  # a subprocess importing torch: seconds
    pytest.param(prompt(points=[[1, math.inf]]), f"prompt.points[0]=[1, inf] {POINT}",
                 id="predict: inf in prompt.points"),
    pytest.param(prompt(boxes=[[0, 0, 10, 10], [-math.inf, 0, 5, 5]]),
                 f"prompt.boxes[1]=[-inf, 0, 5, 5] {BOX}", id="predict: -inf in the second box"),
    pytest.param(prompts_file('{"img.png": [[NaN, 0, 10, 10]]}'),
                 f"entry 1 ('img.png'): boxes[0]=[nan, 0, 10, 10] {BOX}",
                 id="prompts file: NaN in a box"),
    pytest.param(prompts_file('{"img.png": {"points": [[5, 1e999]]}}'),
                 f"entry 1 ('img.png'): points[0]=[5, inf] {POINT}",
                 id="prompts file: a point past float range"),
    pytest.param(prompts_file('{"images": [{"id": 1, "file_name": "img.png"}], '
                              '"annotations": [{"image_id": 1, "bbox": [0, 0, Infinity, 5]}]}'),
                 f"entry 1 ('img.png'): boxes[0]=[0, 0, inf, 5] {BOX}",
                 id="prompts file: COCO bbox of infinite width"),
    pytest.param(demo_click([float("nan"), 3]), f"⚠️ the click=[nan, 3] {POINT}",
                 id="demo page: a click at NaN"),
    pytest.param(api(box="[NaN, 0, 10, 10]"), f"prompt.box=[nan, 0, 10, 10] {BOX}",
                 id="demo API: NaN in the box"),
    pytest.param(api(points="[[1, -Infinity]]", labels="[1]"), f"prompt.points[0]=[1, -inf] {POINT}",
                 id="demo API: -inf in a point"),
    # nested 5000 levels deep: json and repr hit Python's recursion limit
    pytest.param(api(box=NESTED), "box is nested too deeply to be a prompt, e.g. [10, 20, 200, 180]",
                 id="demo API: a box nested 5000 deep"),
    pytest.param(demo_click(nested(DEEP)), "⚠️ the click=[[[...]]] must be 2 numbers [x, y]",
                 id="demo page: a click nested 5000 deep"),
    # an image SAM's resize would make 0 pixels high
    pytest.param(demo_click([5, 0], image="thin"), f"⚠️ {THIN}", id="demo page: a 20000×1 image"),
    pytest.param(api(image="thin", points="[[5, 0]]"), THIN, id="demo API: a 20000×1 image"),
    pytest.param(lambda env: predict_call(env, image=str(env.thin), prompt=PromptConfig(points=[[5, 0]])),
                 THIN.replace("the image", "thin.png"), id="predict: a 20000×1 image"),
    # commands pointed where they cannot work
    pytest.param(export_cli_to_the_out_folder,
                 "out={out} is a folder: give the file to write, e.g. out={out}/sam_finetuned.pth",
                 id="export CLI: out= a folder", marks=pytest.mark.slow),
    pytest.param(export_to(lambda env: env.image / "sam.pth"),
                 "out={inputs}/img.png/sam.pth: {inputs}/img.png is a file, not a folder",
                 id="export: out= under a file"),
    pytest.param(export_to(lambda env: Path("/proc/samexp-export.pth")),
                 "cannot write the trained weights to /proc/samexp-export.pth (No such file or directory; ",
                 id="export: out= where nothing can be written"),
    pytest.param(demo_on_a_busy_port,
                 "error: port <port> on 127.0.0.1 is in use, so the demo cannot listen there: stop "
                 "what holds it (`ss -ltnp 'sport = :<port>'` names it) or choose another with --port",
                 id="demo CLI: --port in use"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "message"), CASES)
def test_refused_in_one_line_before_anything_is_written(env: Env, case, message: str):
    shown = case(env)
    assert message.format(inputs=env.inputs, out=env.out) in shown
    assert "\n" not in shown and "Traceback" not in shown
    assert not any(env.out.rglob("*")), "something was written"
