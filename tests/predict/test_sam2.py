"""`python -m samexp.predict` on SAM 2.1 (the session's tiny SAM 2.1 LoRA run, `tiny_sam2_run`):
prompt mode writes what stock `SAM2ImagePredictor` gives on the fine-tuned model, auto mode is
`SAM2AutomaticMaskGenerator` over samexp's predictor, compare=true sets the base model beside it,
and a class_tokens fine-tune writes its class map."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import save_adapter
from samexp.data.base import read_image_rgb
from samexp.models.sam2 import build_sam2_tiny
from samexp.predict.classes import predict_classes
from samexp.predict.predictor import Predictor
from samexp.prompts.class_tokens import attach_class_prompts
from samexp.tracking.finetuned import load_finetuned
from tests.conftest import TinyRun
from tests.models.stock_sam2 import stock_predictor
from tests.predict.conftest import BOX, Trained, read_mask

CASES = {"box": {"box": BOX}, "points": {"points": [[380.0, 470.0], [100.0, 100.0]], "labels": [1, 0]}}  # fmt: skip
# stock SAM2Transforms resizes the photo in float 0..1 and keeps the fractions; samexp's one
# pipeline keeps the resized image as uint8, as training saw it (up to 0.5/255 apart per pixel):
# the logits differ by at most ~3e-4 on the ring photo, so only a pixel whose logit is that
# close to the threshold may flip
LOGIT_TOLERANCE = 1e-3
AUTO = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def trained(rings_root: Path, tiny_sam2_run: TinyRun) -> Trained:
    images = sorted((rings_root / "test" / "images").glob("*.jpg"))
    run = tiny_sam2_run
    return Trained(run.run_id, run.tracking_uri, run.weights, images)


@pytest.fixture(scope="module")
def stock(trained: Trained):
    """Stock SAM2ImagePredictor on the fine-tuned model, LoRA merged as predict does."""
    base, adapter, _ = load_finetuned(weights=str(trained.weights))
    adapter.merge(base.sam)
    return stock_predictor(base.sam.eval())


@pytest.mark.parametrize("case", CASES)
def test_written_mask_is_stock_sam2_image_predictors_up_to_threshold_rounding(
    trained, stock, tmp_path, case
):
    image = trained.images[0]
    trained.predict(tmp_path, image=str(image), prompt=CASES[case])
    written = read_mask(tmp_path / f"{image.stem}_mask0.png")
    given = CASES[case]
    stock.set_image(read_image_rgb(image, orient=True))
    logits, iou, _ = stock.predict(
        point_coords=None if "points" not in given else np.array(given["points"]),
        point_labels=None if "labels" not in given else np.array(given["labels"]),
        box=None if "box" not in given else np.array(given["box"]),
        multimask_output=False, return_logits=True,
    )  # fmt: skip
    differ = written != (logits[0] > 0)
    assert written.shape == logits.shape[1:] and 0 < written.sum() < written.size
    assert np.all(np.abs(logits[0][differ]) < LOGIT_TOLERANCE)
    info = json.loads((tmp_path / f"{image.stem}.json").read_text())
    assert info["masks"][0]["score"] == pytest.approx(float(iou[0]), abs=1e-4)


def test_compare_sets_the_zero_shot_sam2_beside_the_fine_tuned_one(trained, tmp_path):
    image = trained.images[0]
    trained.predict(tmp_path, image=str(image), prompt={"box": BOX}, compare=True)
    info = json.loads((tmp_path / f"{image.stem}.json").read_text())
    assert info["zero_shot"][0]["score"] != info["masks"][0]["score"]
    assert (tmp_path / f"{image.stem}_compare.png").is_file()


def test_auto_mode_writes_sam2_automatic_masks_of_the_photos_size(trained, tmp_path):
    image = trained.images[1]
    trained.predict(tmp_path, image=str(image), mode="auto", auto=AUTO)
    records = json.loads((tmp_path / f"{image.stem}_auto.json").read_text())
    shape = read_image_rgb(image, orient=True).shape[:2]
    assert records and {"predicted_iou", "stability_score", "bbox", "area"} <= set(records[0])
    for record in records:
        mask = read_mask(tmp_path / record["mask"])
        assert mask.shape == shape and mask.sum() == record["area"]


def test_a_class_tokens_fine_tune_writes_its_class_map(trained, tmp_path):
    base = build_sam2_tiny(seed=0)
    DecoderAdapter().apply(base.sam)
    torch.manual_seed(0)
    attach_class_prompts(base.sam, ["ring", "stone"], tokens=2)
    weights = save_adapter(tmp_path / "classes.safetensors", base, DecoderAdapter())
    image = trained.images[1]
    Trained("", "", weights).predict(tmp_path / "out", "weights", image=str(image), mode="classes")
    written = cv2.imread(str(tmp_path / "out" / f"{image.stem}_classes.png"), cv2.IMREAD_UNCHANGED)
    ids, _ = predict_classes(Predictor(base.sam.eval()), read_image_rgb(image, orient=True))
    assert written.any()  # a class was found, so equality says something
    np.testing.assert_array_equal(written, ids)
