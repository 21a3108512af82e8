"""One image pipeline: the mask evaluation scores for an image and a prompt is the mask
`python -m samexp.predict` writes and the demo shows for them, pixel for pixel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from samexp.adapters.decoder import DecoderAdapter
from samexp.adapters.io import save_adapter
from samexp.app import answers
from samexp.app.models import load_pair
from samexp.app.uploads import read_upload
from samexp.config.schema import Device
from samexp.data.base import collate, make_sample, read_image_rgb
from samexp.models.build import BaseModel, build_tiny
from samexp.models.sam2 import build_sam2_tiny
from samexp.predict import PredictConfig, predict
from samexp.predict.config import PromptConfig
from samexp.predict.prompts import parse_prompts
from samexp.predict.run import ready
from samexp.prompts.base import mask_to_box
from samexp.prompts.box import BoxPrompt
from samexp.tracking.finetuned import load_finetuned
from samexp.training.evaluation import evaluate
from tests.predict.conftest import read_mask

# the photo's (H, W) per family: shrunk to exactly half on each side at the tiny models' 256 px
# input (SAM letterboxes 384×512 into 192×256; SAM 2 stretches to the square, so a square photo),
# so the box evaluation draws in the model's frame is a box in the photo's pixels with no
# rounding; shrinking is also where OpenCV's INTER_AREA and SAM's own resize differ
PHOTOS = {"tiny": (build_tiny, (384, 512)), "sam2_tiny": (build_sam2_tiny, (512, 512))}


def _decoder_file(path: Path, build: Callable[..., BaseModel]) -> Path:
    """A tiny decoder fine-tune with its decoder drawn as if trained (LoRA's merge would make
    predict's weights differ from the run's by rounding, which is not what this test is about)."""
    base = build(seed=0)
    DecoderAdapter().apply(base.sam)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in base.sam.named_parameters():
            if "mask_decoder" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return save_adapter(path, base, DecoderAdapter())


@pytest.mark.parametrize("model", PHOTOS)
def test_evaluation_predict_and_the_demo_give_the_same_mask_pixel_for_pixel(
    tmp_path: Path, model: str
):
    build, (h, w) = PHOTOS[model]
    weights = _decoder_file(tmp_path / "decoder.safetensors", build)
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = np.zeros((1, h, w), dtype=bool)
    truth[0, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    # evaluation, as a run scores the test split (on the model predict loads)
    base, adapter, _ = load_finetuned(weights=str(weights))
    adapter.merge(base.sam)
    sam = ready(base.sam, "auto", torch.device("cpu"))
    sample = make_sample(
        "photo", str(photo), read_image_rgb(photo, orient=True), truth, base.pipeline
    )
    loader = DataLoader([sample], batch_size=1, collate_fn=collate)
    evaluated = evaluate(sam, loader, BoxPrompt(), torch.device("cpu"), keep_predictions=1)
    scored = evaluated.predictions["photo"]

    # the box evaluation prompted with, in the photo's pixels (exactly: the scale is 1/2)
    in_frame = mask_to_box(sample.masks)[0]
    box = (in_frame * 2).tolist()
    assert torch.equal(base.pipeline.frame(h, w).boxes(torch.tensor([box]))[0], in_frame)

    out = tmp_path / "out"
    predict(PredictConfig(weights=str(weights), image=str(photo), out=str(out),
                          device=Device.cpu, prompt=PromptConfig(box=box)))  # fmt: skip
    written = read_mask(out / "photo_mask0.png")

    pair = load_pair(weights=str(weights), device="cpu")
    upload = read_upload(photo, float("inf"), float("inf"))
    shown = answers.segment(pair, upload, parse_prompts(box=box)).predictions["fine-tuned"]

    assert 0 < scored.sum() < scored.size  # a mask with edges, so equality says something
    np.testing.assert_array_equal(written, scored)
    np.testing.assert_array_equal(shown.masks[0, 0], scored)
