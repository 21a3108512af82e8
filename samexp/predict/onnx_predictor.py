"""`python -m samexp.predict backend=onnx`: samexp's `Predictor` (stock `SamPredictor`'s interface)
with the model's two ONNX graphs in place of the PyTorch model, so prompt mode, the MLflow model
and anything written for `SamPredictor` run through onnxruntime with the same image pipeline in
front and the same mask upscaling behind (`Frame.logits`)."""

from __future__ import annotations

import numpy as np
import torch

from samexp.data.frame import Frame
from samexp.models.family import Features
from samexp.models.onnx.runtime import OnnxModel
from samexp.predict.predictor import FrameTransform, Predictor

PAD = -1.0  # "not a point": what SAM's prompt encoder appends when there is no box
CORNERS = (2.0, 3.0)  # a box's top-left and bottom-right corner


class OnnxPredictor(Predictor):
    """`set_image` runs the encoder graph, `predict_torch` the decoder graph (on the CPU); the
    image pipeline around them is `Predictor`'s."""

    def __init__(self, onnx: OnnxModel) -> None:  # no nn.Module: the graphs are the model
        self.onnx = onnx
        self.model = None
        self.geometry = onnx.geometry
        self.threshold = onnx.mask_threshold
        self.transform = FrameTransform(self.geometry)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode_input(self, model_input: torch.Tensor, frame: Frame) -> Features:
        return self.onnx.encode(model_input, frame)

    def decode_input(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompts written in SAM's ONNX convention the way the family's prompt encoder reads
        them (clicks, a box's corners, the padding point), through the decoder graph."""
        coords, labels = onnx_prompts(point_coords, point_labels, boxes, mask_input,
                                      self.onnx.pad_with_box)  # fmt: skip
        mask = None if mask_input is None else mask_input.float().cpu().numpy()
        low_res, iou = self.onnx.decode(self.features, coords, labels, mask)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return low_res[:, chosen], iou[:, chosen]


def onnx_prompts(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    pad_with_box: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Prompts in the model's input frame -> B×N coordinates and labels as SAM's ONNX decoder
    takes them (`segment_anything/utils/onnx.py`), padded as the family's prompt encoder pads
    (`ModelFamily.pads_boxed_prompts`). Token order does not change the answer: the decoder's
    attention treats prompt tokens as a set."""
    count = next((len(t) for t in (point_coords, boxes, mask_input) if t is not None), 1)
    coords = [np.zeros((count, 0, 2), np.float32)]
    labels = [np.zeros((count, 0), np.float32)]
    if point_coords is not None:
        coords.append(point_coords.float().cpu().numpy())
        labels.append(point_labels.float().cpu().numpy())
    if boxes is not None:
        coords.append(boxes.float().cpu().numpy().reshape(count, 2, 2))
        labels.append(np.tile(np.array(CORNERS, np.float32), (count, 1)))
    # SAM pads clicks without a box; SAM 2 pads any points, and a box is two points to it
    if (point_coords is not None and boxes is None) or (pad_with_box and boxes is not None):
        coords.append(np.zeros((count, 1, 2), np.float32))
        labels.append(np.full((count, 1), PAD, np.float32))
    return np.concatenate(coords, 1), np.concatenate(labels, 1)
