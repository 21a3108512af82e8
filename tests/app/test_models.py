"""The demo's models: the image encoder runs once per image, answers match the stock predictor,
and each tab (prompts, automatic masks, learned classes) reuses the same embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samexp.app import answers
from samexp.app.models import load_pair
from samexp.config.errors import SamexpError
from samexp.predict.prompts import parse_prompts
from samexp.tracking.finetuned import load_finetuned
from tests.app.conftest import CLASSES, FAMILIES


@pytest.fixture
def photo() -> np.ndarray:
    g = np.random.default_rng(0)
    return g.integers(0, 256, (90, 120, 3), dtype=np.uint8)


BOX = parse_prompts(box=[10, 15, 80, 70])


@pytest.mark.parametrize("decoder_file", FAMILIES, indirect=True)
def test_a_decoder_fine_tune_shares_one_encoder_pass_per_image_across_models_and_prompts(
    decoder_file: Path, photo: np.ndarray
):
    pair = load_pair(weights=str(decoder_file), device="cpu")
    assert pair.shared_encoder
    first = answers.segment(pair, photo, BOX)
    again = answers.segment(pair, photo, parse_prompts(points=[[40, 40], [5, 5]], labels=[1, 0]))
    assert pair.finetuned.embeddings.misses == 1
    assert first.timings["zero-shot"].encode_s > 0  # the first model to see the image encodes it
    assert first.timings["fine-tuned"].encode_s == 0
    assert all(t.encode_s == 0 for t in again.timings.values())
    # the decoders differ, so the answers do
    assert not np.allclose(
        first.predictions["zero-shot"].scores, first.predictions["fine-tuned"].scores
    )


@pytest.mark.parametrize("lora_file", FAMILIES, indirect=True)
def test_a_lora_run_encodes_each_image_once_per_model(lora_file: Path, photo: np.ndarray):
    pair = load_pair(weights=str(lora_file), device="cpu")
    assert not pair.shared_encoder
    for _ in range(3):
        answers.segment(pair, photo, BOX)
    assert pair.finetuned.embeddings.misses == 1
    assert pair.zero_shot.embeddings.misses == 1
    answers.segment(pair, photo[::-1].copy(), BOX)  # a new image: one new pass each
    assert pair.finetuned.embeddings.misses == 2


def test_the_fine_tuned_answer_is_what_the_stock_predictor_gives_for_the_same_weights(
    lora_file: Path, photo: np.ndarray
):
    pair = load_pair(weights=str(lora_file), device="cpu")
    ours = answers.segment(pair, photo, BOX).predictions["fine-tuned"]
    base, adapter, _ = load_finetuned(weights=str(lora_file))
    adapter.merge(base.sam)
    # stock segment_anything end to end: its own resize, box transform, decoder and upsampling
    stock = SamPredictor(base.sam.eval())
    stock.set_image(photo)
    box = stock.transform.apply_boxes_torch(torch.as_tensor(BOX.boxes, dtype=torch.float),
                                            stock.original_size)  # fmt: skip
    masks, scores, _ = stock.predict_torch(None, None, box, multimask_output=False)
    np.testing.assert_array_equal(ours.masks, masks.numpy())
    np.testing.assert_allclose(ours.scores, scores.numpy(), rtol=1e-5)


@pytest.mark.parametrize("decoder_file", FAMILIES, indirect=True)
def test_automatic_masks_and_learned_classes_reuse_the_prompt_tabs_embedding(
    decoder_file: Path, photo: np.ndarray
):
    pair = load_pair(weights=str(decoder_file), device="cpu")
    answers.segment(pair, photo, BOX)
    pictures, lines = answers.auto_masks(pair, photo, points_per_side=4, alpha=0.5)
    picture, line = answers.classes(pair, photo, alpha=0.5)
    assert pair.finetuned.embeddings.misses == 1
    assert set(pictures) == {"zero-shot", "fine-tuned"}
    assert all(p.shape[:2] == photo.shape[:2] for p in pictures.values())
    assert all("masks" in text and "encoder cached" in text for text in lines.values())
    assert pair.classes == CLASSES
    assert picture.shape[0] == photo.shape[0] and picture.shape[1] > photo.shape[1]  # + legend
    assert "encoder cached" in line


@pytest.mark.slow  # a vit_b/vit_t build, a 1024 px photo or a fresh interpreter: seconds
def test_automatic_masks_of_a_large_photo_encode_its_1024_px_copy_once_per_model(
    decoder_file: Path,
):
    pair = load_pair(weights=str(decoder_file), device="cpu")
    photo = np.random.default_rng(1).integers(0, 256, (1500, 1200, 3), dtype=np.uint8)
    first, lines = answers.auto_masks(pair, photo, points_per_side=4, alpha=0.5)
    assert first["fine-tuned"].shape == photo.shape  # masks scaled back to the photo
    assert "encoder cached" not in lines["zero-shot"]  # the copy, encoded for the pair
    answers.auto_masks(pair, photo, points_per_side=8, alpha=0.5)
    assert pair.finetuned.embeddings.misses == 1


def test_the_opacity_changes_the_picture_not_the_masks(decoder_file: Path, photo: np.ndarray):
    pair = load_pair(weights=str(decoder_file), device="cpu")
    answer = answers.segment(pair, photo, BOX)
    faint, strong = answer.pictures(photo, 0.1), answer.pictures(photo, 0.9)
    mask = answer.predictions["fine-tuned"].best()[0][0]
    assert mask.any()
    assert not np.array_equal(faint["fine-tuned"][mask], strong["fine-tuned"][mask])


def test_a_prompt_outside_the_image_is_refused_with_its_size(decoder_file: Path, photo: np.ndarray):
    pair = load_pair(weights=str(decoder_file), device="cpu")
    with pytest.raises(SamexpError, match=r"lies outside the image, which is 120×90"):
        answers.segment(pair, photo, parse_prompts(box=[10, 10, 500, 60]))
