"""Prompts meet their images before any model is built: a prompts file is checked whole (every
entry, and every box and point against the size of the image it names), all its problems refused
in one message naming the file and each entry; a box just past an image's edge is clipped to it
and said once per command, as training says its polygons (`samexp.data.bounds`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from samexp.config.errors import SamexpError
from samexp.config.schema import Device
from samexp.predict import PredictConfig, predict, run
from samexp.predict.config import PromptConfig
from samexp.predict.prompts import fit_images, parse_prompts
from tests.predict.conftest import read_mask, sam_predict

SIZES = {"a.png": (40, 60), "b.png": (30, 50)}  # name: (H, W)
GOOD = [[1, 2, 10, 10]]


class ModelBuilt(Exception):
    """Raised by the stand-in model loader: the inputs were accepted."""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two tiny images; building a model raises ModelBuilt, so a refusal proves it came first."""
    images = tmp_path / "images"
    images.mkdir()
    for name, (h, w) in SIZES.items():
        assert cv2.imwrite(str(images / name), np.full((h, w, 3), 90, np.uint8))

    def load_model(*_):
        raise ModelBuilt

    monkeypatch.setattr(run, "load_model", load_model)
    return images


def predict_file(folder: Path, entries: dict) -> dict:
    path = folder.parent / "prompts.json"
    path.write_text(json.dumps(entries))
    cfg = PredictConfig(weights=str(folder.parent / "never.safetensors"), images=str(folder),
                        prompts=str(path), out=str(folder.parent / "out"), device=Device.cpu)  # fmt: skip
    return predict(cfg)


REFUSED = {
    "a box far outside the 2nd entry's image": (
        {"a.png": GOOD, "b.png": [[0, 0, 10, 200]]},
        "prompts.json: entry 2 ('b.png'): boxes[0]=[0, 0, 10, 200] lies outside b.png, which is "
        "50×30 (W×H), by 170 px: farther than the image's size, so it is not clipped",
    ),
    "a 2nd entry with x0 > x1": (
        {"a.png": GOOD, "b": [[5, 0, 1, 1]]},
        "prompts.json: entry 2 ('b'): boxes[0]=[5, 0, 1, 1] has x0 > x1",
    ),
    "a box with no part on its image": (
        {"a.png": GOOD, "b.png": [[55, 0, 60, 10]]},
        "entry 2 ('b.png'): boxes[0]=[55, 0, 60, 10] lies outside b.png, which is 50×30 (W×H): "
        "no part of it is on the image",
    ),
    "a point just outside (points are never clipped)": (
        {"a.png": {"points": [[61, 5]]}},
        "entry 1 ('a.png'): points[0]=[61, 5] lies outside a.png, which is 60×40 (W×H): points "
        "are not clipped",
    ),
    "a coordinate that is not finite": (
        {"a.png": GOOD, "b.png": [[1, 2, 3, float("nan")]]},
        "entry 2 ('b.png'): boxes[0]=[1, 2, 3, nan] is not finite",
    ),
    "a wrong entry and a box off its image, together": (
        {"a.png": [[0, 0, 10, 100]], "b.png": {"box": [1, 2, 3, 4]}},
        "prompts.json: 2 problems, nothing was predicted: entry 2 ('b.png'): expected [[x0, y0, "
        "x1, y1], ...] or an object with boxes, points, labels; entry 1 ('a.png'): "
        "boxes[0]=[0, 0, 10, 100] lies outside a.png",
    ),
    "seven bad entries: the first five, then how many more": (
        {"a.png": GOOD, **{f"e{i}": [[5, 0, 1, 1]] for i in range(7)}},
        "7 problems, nothing was predicted: entry 2 ('e0'): boxes[0]=[5, 0, 1, 1] has x0 > x1: "
        "write boxes as [x0, y0, x1, y1] with the top-left corner first; entry 3 ('e1')",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_prompts_file_is_refused_whole_before_the_model_is_built(folder, case):
    entries, said = REFUSED[case]
    with pytest.raises(SamexpError) as refused:
        predict_file(folder, entries)  # never ModelBuilt: refused first
    message = str(refused.value)
    assert said in message and "\n" not in message and "prompt." not in message, message
    if len(entries) == 8:
        assert "entry 7 ('e5')" not in message and message.endswith("; and 2 more"), message


def test_boxes_just_past_their_images_are_clipped_and_said_once_for_the_whole_file(folder, caplog):
    entries = {"a.png": [[-12, 5, 30, 20], [10, 10, 20, 20]], "b.png": [[40, 0, 53, 10]]}
    with caplog.at_level(logging.WARNING), pytest.raises(ModelBuilt):
        predict_file(folder, entries)  # accepted: the model is built next
    said = [r.getMessage() for r in caplog.records if "reach outside" in r.getMessage()]
    assert said == [
        "predict: 2 box(es) on 2 image(s) reach outside their image (by up to 12 px: a.png "
        "entry 1 ('a.png'): boxes[0], b.png entry 2 ('b.png'): boxes[0]); the parts outside are "
        "clipped"
    ], said


@pytest.mark.parametrize(
    "box, fitted",
    [([-12, 5, 30, 20], [0, 5, 30, 20]),  # left edge
     ([40, 35, 70, 45], [40, 35, 60, 40]),  # bottom-right corner
     ([0, 0, 60.4, 40], [0, 0, 60, 40]),  # within half a pixel: clipped, not said
     ([1, 2, 10, 10], [1, 2, 10, 10])],  # inside: untouched
)  # fmt: skip
def test_a_near_miss_box_is_clipped_to_the_image(box, fitted, caplog):
    with caplog.at_level(logging.WARNING):
        out = fit_images({Path("a.png"): SIZES["a.png"]}, lambda _: parse_prompts(box=box))
    assert out[Path("a.png")].boxes.tolist() == [fitted]
    moved = max(abs(a - b) for a, b in zip(box, fitted, strict=True))
    assert ("reach outside" in caplog.text) == (moved > 0.5), caplog.text


def test_a_command_line_box_past_the_edge_predicts_the_clipped_box(
    trained, reference, tmp_path, caplog
):
    image = trained.images[0]  # 1024×1024
    with caplog.at_level(logging.WARNING):
        trained.predict(tmp_path, image=str(image),
                        prompt=PromptConfig(box=[-20.0, 300.0, 1100.0, 650.0]))  # fmt: skip
    expected, _ = sam_predict(reference, image, box=[0, 300, 1024, 650])
    assert np.array_equal(read_mask(tmp_path / f"{image.stem}_mask0.png"), expected[0])
    assert caplog.text.count("reach outside their image") == 1
    assert f"by up to 76 px: {image.name} prompt.box)" in caplog.text, caplog.text
