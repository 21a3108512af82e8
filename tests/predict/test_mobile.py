"""`python -m samexp.predict` on a MobileSAM (vit_t) adapter file: prompted and automatic masks
through the stock segment_anything API, on the base rebuilt from the file."""

from __future__ import annotations

import json

import pytest

from samexp.config.schema import Device
from samexp.data.base import read_image_rgb
from samexp.predict import PredictConfig, predict
from samexp.predict.config import AutoConfig, PromptConfig
from tests.predict.conftest import BOX, read_mask

# pycocotools' decode predates numpy 2's `copy=` keyword; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.slow
def test_vit_t_weights_predict_prompted_and_automatic_masks(vit_t_lora_file, rings_root, tmp_path):
    weights = vit_t_lora_file
    image = rings_root / "test" / "images" / "ring_test_2.jpg"
    h, w = read_image_rgb(image, orient=True).shape[:2]

    def run(out: str, **settings) -> dict:
        return predict(PredictConfig(weights=str(weights), image=str(image), out=str(tmp_path / out),
                                     device=Device.cpu, **settings))  # fmt: skip

    prompted = run("prompted", prompt=PromptConfig(box=BOX))
    assert prompted["base"]["arch"] == "vit_t" and prompted["images"][0]["masks"] == 1
    assert read_mask(tmp_path / "prompted" / f"{image.stem}_mask0.png").shape == (h, w)

    knobs = AutoConfig(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                       output_mode="coco_rle")  # fmt: skip
    auto = run("auto", mode="auto", auto=knobs)
    records = json.loads((tmp_path / "auto" / f"{image.stem}_auto.json").read_text())
    assert auto["mode"] == "auto" and auto["images"][0]["masks"] == len(records) > 0
    assert all(r["segmentation"]["size"] == [h, w] for r in records)
