"""The predictor `python -m samexp.predict` and the demo run, for every model family: stock
`SamPredictor`'s interface (so SAM's `SamAutomaticMaskGenerator`, SAM 2's generator through its
family, and the prompt and class modes use it unchanged), with the image going in and the masks
coming out through samexp's one image pipeline (the model's `Pipeline`) and the encode / decode
seam, the same functions training and evaluation call. The IoU a run reports is then measured on
what users of the run get."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import SamPredictor
from torch import nn

from samexp.data.frame import Frame, Pipeline
from samexp.models.family import Features
from samexp.models.seam import Prompts, decode, encode, mask_threshold, pipeline


class FrameTransform:
    """`ResizeLongestSide`'s coordinate methods, answered by the model's pipeline: what stock
    `SamPredictor.predict` and `SamAutomaticMaskGenerator` call to move prompts into the frame,
    right for a stretched (SAM 2) frame too."""

    def __init__(self, geometry: Pipeline) -> None:
        self.geometry = geometry

    def apply_coords_torch(
        self, coords: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        return self.geometry.frame(*original_size).points(coords)

    def apply_boxes_torch(
        self, boxes: torch.Tensor, original_size: tuple[int, ...]
    ) -> torch.Tensor:
        return self.geometry.frame(*original_size).boxes(boxes)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return self.apply_coords_torch(torch.as_tensor(coords), original_size).numpy()

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return self.apply_boxes_torch(torch.as_tensor(boxes), original_size).numpy()


class Predictor(SamPredictor):
    """`SamPredictor` whose `set_image` and `predict_torch` go through the one pipeline; `frame`
    maps prompts of the image it holds into the model's input and masks back out. `features`
    are the family's (a dict of levels)."""

    frame: Frame | None = None

    def __init__(self, model: nn.Module) -> None:  # not SamPredictor's: it reads a ViT's size
        self.model = model
        self.geometry = pipeline(model)
        self.threshold = mask_threshold(model)
        self.transform = FrameTransform(self.geometry)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H×W×3 uint8 image (RGB, or BGR when `image_format` says so)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format != "RGB":  # every family samexp knows takes RGB
            image = image[..., ::-1]
        model_input, frame = self.geometry.image(image)
        self.hold(frame, self.encode_input(model_input, frame))

    def encode_input(self, model_input: torch.Tensor, frame: Frame) -> Features:
        """One image's uint8 3×S×S model input -> its features (what a backend replaces)."""
        return encode(self.model, model_input[None].to(self.device), [frame.input_size])

    def hold(self, frame: Frame, features: Features) -> None:
        """Hold `features` of the image in `frame` as `set_image` leaves them (the demo restores
        kept embeddings through this)."""
        self.reset_image()
        self.frame = frame
        self.original_size, self.input_size = frame.original_size, frame.input_size
        self.features, self.is_image_set = features, True

    def reset_image(self) -> None:
        super().reset_image()
        self.frame = None

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As `SamPredictor.predict_torch` (prompts in the model's input frame): masks (or
        logits) at the image's size, predicted IoU and low-res logits, one row per prompt."""
        if not self.is_image_set or self.frame is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        low_res, iou = self.decode_input(point_coords, point_labels, boxes, mask_input,
                                         multimask_output)  # fmt: skip
        if return_logits:
            return self.frame.logits(low_res), iou, low_res
        return self.frame.masks(low_res, self.threshold), iou, low_res

    def decode_input(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in the frame -> low-res logits and IoU on the held image (what a backend
        replaces)."""
        prompts = Prompts(boxes=boxes, points=point_coords, labels=point_labels,
                          mask_inputs=mask_input)  # fmt: skip
        count = next((len(t) for t in (point_coords, boxes, mask_input) if t is not None), 1)
        owner = torch.zeros(count, dtype=torch.long, device=self.device)
        return decode(self.model, self.features, owner, prompts, multimask_output)
