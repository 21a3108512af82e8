"""The two exported graphs as `nn.Module`s over the encode / decode seam, so what is exported is
the function training, evaluation and predict run (its normalisation, its decoder), not a copy.

Encoder: `image` uint8 1×3×S×S (the model's input from `Pipeline.image`: resized, zero-padded)
and `input_size` int64 [h, w] (the resized image inside it) -> the family's feature levels, named
as the family names them (SAM: image_embed; SAM 2.1: fpn0, fpn1, image_embed).

Decoder: those levels, then SAM's ONNX prompt inputs (`point_coords` float B×N×2 in the input
frame, `point_labels` float B×N: 1 / 0 / 2 / 3 / -1, `mask_input` B×1×4h×4w, `has_mask_input` [1],
`orig_im_size` float [H, W]) -> `masks` (logits at the image's size), `iou_predictions` and
`low_res_masks`, every mask token (`ModelFamily.decode_points`): [:, :1] the single-mask answer,
[:, 1:] the three candidates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samexp.models.family import Features, family_of
from samexp.models.seam import encode, pipeline

PROMPT_INPUTS = ("point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size")
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
ENCODER_INPUTS = ("image", "input_size")


class EncoderGraph(nn.Module):
    """The image encoder behind the family's normalisation; outputs in `levels` order."""

    def __init__(self, model: nn.Module, levels: list[str]) -> None:
        super().__init__()
        self.model, self.levels = model, levels

    def forward(self, image: torch.Tensor, input_size: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = encode(self.model, image, input_size.reshape(1, 2))
        return tuple(features[name] for name in self.levels)


class DecoderGraph(nn.Module):
    """Prompts -> every mask token, upscaled to the image as the model's pipeline upscales."""

    def __init__(self, model: nn.Module, levels: list[str]) -> None:
        super().__init__()
        self.model, self.levels = model, levels
        geometry = pipeline(model)
        self.size, self.stretch = geometry.size, geometry.stretch

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = len(self.levels)
        features: Features = dict(zip(self.levels, inputs[:n], strict=True))
        coords, labels, mask_input, has_mask_input, orig_im_size = inputs[n:]
        low_res, iou = family_of(self.model).decode_points(
            self.model, features, coords, labels, mask_input, has_mask_input
        )
        return to_image(low_res, orig_im_size, self.size, self.stretch), iou, low_res


def to_image(low_res: torch.Tensor, orig_im_size: torch.Tensor, size: int,
             stretch: bool) -> torch.Tensor:  # fmt: skip
    """`Frame.logits` with the image's size as a tensor (a graph input): a stretched frame goes
    straight to H×W; a letterboxed one to S×S, cropped to the resized image (its size rounded as
    `input_shape` rounds), then to H×W."""
    hw = orig_im_size.to(torch.int64)
    if stretch:
        return F.interpolate(low_res, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)
    full = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    scale = size / orig_im_size.to(torch.float32).max()
    inside = torch.floor(orig_im_size.to(torch.float32) * scale + 0.5).to(torch.int64)
    full = full[..., : inside[0], : inside[1]]
    return F.interpolate(full, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)
