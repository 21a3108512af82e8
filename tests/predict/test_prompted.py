"""Prompt mode: the files are exactly what the stock SamPredictor gives on the fine-tuned model,
whichever way the model was named, merged or not; overlays and comparisons show those masks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from samexp.adapters.io import read_adapter_meta
from samexp.adapters.lora import LoraLinear
from samexp.data.base import read_image_rgb
from samexp.models.attention import kernel_of
from samexp.predict.run import load_model
from samexp.tracking.finetuned import build_base
from tests.predict.conftest import BOX, read_mask, read_rgb, sam_predict

POINTS = {"points": [[380.0, 470.0], [100.0, 100.0]], "labels": [1, 0]}
CASES = {"box": {"box": BOX}, "points": POINTS, "box+points": {"box": BOX, "points": [[380, 470]]}}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("case", CASES)
def test_written_mask_and_score_are_sam_predictors_on_the_fine_tuned_model(
    trained, reference, tmp_path, case
):
    image = trained.images[0]
    trained.predict(tmp_path, image=str(image), prompt=CASES[case])
    expected, iou = sam_predict(reference, image, **CASES[case])
    written = read_mask(tmp_path / f"{image.stem}_mask0.png")
    assert written.shape == read_image_rgb(image, orient=True).shape[:2]
    assert np.array_equal(written, expected[0])
    info = read_json(tmp_path / f"{image.stem}.json")
    assert [m["score"] for m in info["masks"]] == pytest.approx(iou.tolist(), abs=1e-6)
    assert info["masks"][0]["area"] == int(expected[0].sum())


def test_run_id_and_weights_file_give_identical_masks_and_scores(trained, tmp_path):
    image = str(trained.images[0])
    trained.predict(tmp_path / "run", "run", image=image, prompt={"box": BOX})
    trained.predict(tmp_path / "file", "weights", image=image, prompt={"box": BOX})
    name = f"{trained.images[0].stem}_mask0.png"
    assert np.array_equal(read_mask(tmp_path / "run" / name), read_mask(tmp_path / "file" / name))
    json_name = f"{trained.images[0].stem}.json"
    assert read_json(tmp_path / "run" / json_name)["masks"] == read_json(tmp_path / "file" / json_name)["masks"]  # fmt: skip


def test_several_boxes_give_one_mask_each_equal_to_prompting_them_one_by_one(
    trained, reference, tmp_path
):
    image, boxes = trained.images[1], [BOX, [400.0, 420.0, 600.0, 600.0]]
    trained.predict(tmp_path, image=str(image), prompt={"boxes": boxes})
    info = read_json(tmp_path / f"{image.stem}.json")
    assert [m["file"] for m in info["masks"]] == [f"{image.stem}_mask{k}.png" for k in range(2)]
    assert info["prompts"]["boxes"] == boxes
    for k, box in enumerate(boxes):
        logits: list = []
        expected, iou = sam_predict(reference, image, box=box, logits=logits)
        differ = read_mask(tmp_path / f"{image.stem}_mask{k}.png") != expected[0]
        # a batch of two is computed with other kernels than a batch of one (AVX-512 / AMX CPUs
        # round them differently): only pixels within a hair of SAM's threshold may flip
        assert np.all(np.abs(logits[0][0][differ]) < 1e-4), np.abs(logits[0][0][differ]).max()
        assert info["masks"][k]["score"] == pytest.approx(float(iou[0]), abs=1e-5)


def test_multimask_writes_sams_three_candidates_per_prompt(trained, reference, tmp_path):
    image, boxes = trained.images[0], [BOX, [400.0, 420.0, 600.0, 600.0]]
    trained.predict(tmp_path, image=str(image), prompt={"boxes": boxes}, multimask=True)
    info = read_json(tmp_path / f"{image.stem}.json")
    assert [(m["prompt"], m["candidate"]) for m in info["masks"]] == [(k, j) for k in range(2) for j in range(3)]  # fmt: skip
    expected, iou = sam_predict(reference, image, box=boxes[1], multimask=True)
    for j in range(3):
        assert np.array_equal(read_mask(tmp_path / f"{image.stem}_mask1_{j}.png"), expected[j])
    assert [m["score"] for m in info["masks"][3:]] == pytest.approx(iou.tolist(), abs=1e-6)


def test_overlay_changes_only_masks_and_drawn_prompts_in_the_chosen_colour(trained, tmp_path):
    image_path, red = trained.images[0], [255, 0, 0]
    prompt = {"box": BOX, "points": [[380.0, 470.0]]}
    trained.predict(tmp_path, image=str(image_path), prompt=prompt, overlay={"alpha": 1.0, "colors": [red]})  # fmt: skip
    image, drawn = read_image_rgb(image_path, orient=True), read_rgb(tmp_path / f"{image_path.stem}_overlay.png")  # fmt: skip
    mask = read_mask(tmp_path / f"{image_path.stem}_mask0.png")
    # where the prompts are drawn (generously: lines are a few pixels wide, dots ~10 px)
    prompts = np.zeros(mask.shape, np.uint8)
    cv2.rectangle(prompts, (60, 300), (700, 650), 1, 12)
    cv2.circle(prompts, (380, 470), 25, 1, -1)
    kernel = np.ones((9, 9), np.uint8)  # the mask's outline is drawn a few pixels wide
    near_mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    changed = (drawn.astype(int) - image).any(2)
    assert not (changed & ~near_mask & ~prompts.astype(bool)).any(), "pixels changed away from masks and prompts"  # fmt: skip
    interior = cv2.erode(mask.astype(np.uint8), kernel).astype(bool) & ~prompts.astype(bool)
    assert interior.sum() > 1000
    # alpha=1 and a one-colour palette: the mask's pixels are that colour (up to PNG round trip: exact)
    assert (drawn[interior] == red).all()


def test_compare_writes_image_zero_shot_and_fine_tuned_side_by_side(trained, tmp_path):
    image = trained.images[0]
    trained.predict(tmp_path, image=str(image), prompt={"box": BOX}, compare=True)
    info = read_json(tmp_path / f"{image.stem}.json")
    tuned, zero = info["masks"][0], info["zero_shot"][0]
    assert (tuned["score"], tuned["area"]) != (zero["score"], zero["area"])
    # the zero-shot record is the base model's own SamPredictor answer
    base = build_base(read_adapter_meta(trained.weights))
    expected, iou = sam_predict(SamPredictor(base.sam), image, box=BOX)
    assert zero["score"] == pytest.approx(float(iou[0]), abs=1e-6)
    assert zero["area"] == int(expected[0].sum()) != tuned["area"]
    strip = read_rgb(tmp_path / f"{image.stem}_compare.png")
    panel = (strip.shape[1] - 2 * 4) // 3  # three square panels, 4 px gaps
    assert strip.shape[0] == panel + 28  # under a 28 px title bar
    middle, right = (strip[28:, i * (panel + 4) : i * (panel + 4) + panel] for i in (1, 2))
    assert not np.array_equal(middle, right)


def test_merged_and_unmerged_lora_predict_the_same(trained, tmp_path):
    image = trained.images[1]
    for merge in (True, False):
        trained.predict(tmp_path / str(merge), image=str(image), prompt={"box": BOX, **POINTS}, merge=merge)  # fmt: skip
    name = f"{image.stem}_mask0.png"
    merged_mask, unmerged_mask = (read_mask(tmp_path / m / name) for m in ("True", "False"))
    # (W + s·BA)x and Wx + s·B(Ax) round differently: at most a pixel whose logit sits at the
    # threshold may flip, never a region
    assert np.mean(merged_mask != unmerged_mask) <= 1e-5
    merged, unmerged = (read_json(tmp_path / m / f"{image.stem}.json")["masks"][0]["score"] for m in ("True", "False"))  # fmt: skip
    assert merged == pytest.approx(unmerged, abs=1e-5)


@pytest.mark.parametrize("merge", [True, False])
def test_merge_folds_lora_into_the_weights_only_when_asked(trained, tmp_path, merge):
    sam, _ = load_model(trained.config(tmp_path, "weights", merge=merge), torch.device("cpu"))
    layers = [m for m in sam.modules() if isinstance(m, LoraLinear)]
    assert layers and all(m.merged is merge for m in layers)


@pytest.mark.parametrize(("attention", "kernel"), [("auto", "blocked"), ("stock", "stock")])
def test_predict_runs_the_encoder_with_the_configured_attention_kernel(
    trained, tmp_path, attention, kernel
):
    cfg = trained.config(tmp_path, "weights", attention=attention)
    sam, _ = load_model(cfg, torch.device("cpu"))
    assert {kernel_of(blk.attn) for blk in sam.image_encoder.blocks} == {kernel}


def test_a_folder_is_predicted_in_name_order_whatever_the_image_mode(trained, tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    gray16 = (read_image_rgb(trained.images[1])[..., 0].astype(np.uint16) * 257)[:500, :600]
    cv2.imwrite(str(folder / "b_gray16.png"), gray16)
    rgba = cv2.cvtColor(read_image_rgb(trained.images[0])[:700, :800], cv2.COLOR_RGB2BGRA)
    cv2.imwrite(str(folder / "a_rgba.png"), rgba)
    (folder / "notes.txt").write_text("not an image")
    index = trained.predict(tmp_path / "out", "weights", images=str(folder), prompt={"box": [10, 10, 400, 300]})  # fmt: skip
    assert [(Path(e["image"]).name, e["width"], e["height"]) for e in index["images"]] == [
        ("a_rgba.png", 800, 700), ("b_gray16.png", 600, 500)]  # fmt: skip
    assert read_mask(tmp_path / "out" / "b_gray16_mask0.png").shape == (500, 600)
    assert "notes.txt" in caplog.text
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == index
    for entry in index["images"]:
        assert all((tmp_path / "out" / f).is_file() for f in entry["files"])
