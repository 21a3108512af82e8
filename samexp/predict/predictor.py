"""The predictor `python -m samexp.predict` and the demo run: stock `SamPredictor`'s interface, so
`SamAutomaticMaskGenerator` and the prompt and class modes use it unchanged, with the image going
in and the masks coming out through samexp's one image pipeline (`samexp.data.frame`) and the
encode / decode seam, the same functions training and evaluation call. The IoU a run reports is
then measured on what users of the run get."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import SamPredictor

from samexp.data.frame import Frame, to_model_input
from samexp.models.seam import Prompts, decode, encode


class Predictor(SamPredictor):
    """`SamPredictor` whose `set_image` and `predict_torch` go through the one pipeline; `frame`
    maps prompts of the image it holds into the model's input and masks back out."""

    frame: Frame | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H×W×3 uint8 image (RGB, or BGR when `image_format` says so)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        model_input, frame = to_model_input(image, self.model.image_encoder.img_size)
        self.hold(frame, encode(self.model, model_input[None].to(self.device), [frame.input_size]))

    def hold(self, frame: Frame, features: torch.Tensor) -> None:
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
        prompts = Prompts(boxes=boxes, points=point_coords, labels=point_labels,
                          mask_inputs=mask_input)  # fmt: skip
        count = next((len(t) for t in (point_coords, boxes, mask_input) if t is not None), 1)
        owner = torch.zeros(count, dtype=torch.long, device=self.device)
        low_res, iou = decode(self.model, self.features, owner, prompts, multimask_output)
        if return_logits:
            return self.frame.logits(low_res), iou, low_res
        return self.frame.masks(low_res, self.model.mask_threshold), iou, low_res
