"""The ONNX export's check, in the command that writes it: the same image and prompts through
samexp's PyTorch `Predictor` and through the graphs with onnxruntime (`OnnxPredictor`), compared
where users see them: feature levels, low-res logits, predicted IoU, masks at the image's size,
and the decoder graph's own full-size `masks` output (what a user of the graphs alone gets)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.onnx_predictor import OnnxPredictor, onnx_prompts
from samexp.predict.predictor import Predictor


def cases(height: int, width: int) -> dict[str, dict[str, Any]]:
    """Prompts (image pixels) covering every decoder input: a box, clicks, both, three
    candidates, and a mask input (the box's own answer fed back, as iterative clicking does)."""
    box = np.array([[width * 0.25, height * 0.25, width * 0.75, height * 0.75]])
    clicks = np.array([[[width * 0.5, height * 0.5], [width * 0.05, height * 0.05]]])
    labels = np.array([[1, 0]])
    return {
        "box": {"boxes": box},
        "points": {"points": clicks, "labels": labels},
        "box+points": {"boxes": box, "points": clicks, "labels": labels},
        "points, multimask": {"points": clicks, "labels": labels, "multimask": True},
        "box + mask input": {"boxes": box, "mask_from": "box"},
    }


def compare(sam: nn.Module, onnx: OnnxModel, image: np.ndarray) -> dict[str, Any]:
    """Largest differences between PyTorch and onnxruntime on `image` (H×W×3 RGB uint8)."""
    reference, runtime = Predictor(sam), OnnxPredictor(onnx)
    started = time.perf_counter()
    reference.set_image(image)
    torch_s = time.perf_counter() - started
    started = time.perf_counter()
    runtime.set_image(image)
    onnx_s = time.perf_counter() - started
    report: dict[str, Any] = {
        "features": {k: _diff(reference.features[k], runtime.features[k]) for k in onnx.levels},
        "cases": {},
        "encode_s": {"pytorch": round(torch_s, 4), "onnxruntime": round(onnx_s, 4)},
    }
    answers: dict[str, torch.Tensor] = {}
    for name, case in cases(*image.shape[:2]).items():
        inputs = _frame_inputs(reference, case, answers)
        multimask = case.get("multimask", False)
        with torch.no_grad():
            ref_masks, ref_iou, ref_low = reference.predict_torch(
                *inputs, multimask_output=multimask, return_logits=True)  # fmt: skip
            got_masks, got_iou, got_low = runtime.predict_torch(
                *inputs, multimask_output=multimask, return_logits=True)  # fmt: skip
        answers[name] = ref_low
        threshold = onnx.mask_threshold
        report["cases"][name] = {
            "low_res_logits": _diff(ref_low, got_low),
            "logits": _diff(ref_masks, got_masks),
            "iou": _diff(ref_iou, got_iou),
            "mask_pixels_differ": int(((ref_masks > threshold) != (got_masks > threshold)).sum()),
            "mask_pixels": int(ref_masks.numel()),
        }
    report["graph_masks"] = _graph_masks(reference, runtime, onnx, image)
    worst = report["cases"].values()
    report["max_logits"] = max(max(c["low_res_logits"], c["logits"]) for c in worst)
    report["max_iou"] = max(c["iou"] for c in worst)
    report["max_features"] = max(report["features"].values())
    return report


def _frame_inputs(predictor: Predictor, case: dict[str, Any],
                  answers: dict[str, torch.Tensor]) -> tuple:  # fmt: skip
    """A case's prompts moved into the model's input frame (as `SamPredictor.predict` does)."""
    frame = predictor.frame
    coords = labels = boxes = mask = None
    if "points" in case:
        coords = frame.points(torch.as_tensor(case["points"], dtype=torch.float))
        labels = torch.as_tensor(case["labels"])
    if "boxes" in case:
        boxes = frame.boxes(torch.as_tensor(case["boxes"], dtype=torch.float))
    if "mask_from" in case:
        mask = answers[case["mask_from"]][:, :1]
    return coords, labels, boxes, mask


def _graph_masks(reference: Predictor, runtime: OnnxPredictor, onnx: OnnxModel,
                 image: np.ndarray) -> float:  # fmt: skip
    """The decoder graph's full-size `masks` output against PyTorch's upscaling of its own
    low-res logits (every token): what a user feeding the graphs alone gets."""
    h, w = image.shape[:2]
    boxes = reference.frame.boxes(torch.tensor([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]))
    coords, labels = onnx_prompts(None, None, boxes, None, onnx.pad_with_box)
    feed = onnx.feed(runtime.features, coords, labels, None, image_size=(h, w))
    masks, low_res = onnx.decoder.run(["masks", "low_res_masks"], feed)
    return _diff(reference.frame.logits(torch.from_numpy(low_res)), torch.from_numpy(masks))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())
