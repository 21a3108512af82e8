"""The one image pipeline: a photo into SAM's input frame, prompts into it, masks back out of it.

Training, evaluation, `python -m samexp.predict` and the demo all call these functions, so the
IoU a run reports is measured on exactly the pixels, prompts and masks its users get.

The frame is `ResizeLongestSide`'s: the longest side scaled to the model's input size S, the
image zero-padded bottom/right to S×S, prompts scaled by the same factors, and the low-res logits
upsampled to S×S, cropped to the image and upsampled to its original size. The resize is PIL's
bilinear, byte for byte what `ResizeLongestSide.apply_image` (and so the stock `SamPredictor`)
does, chosen over OpenCV's INTER_AREA because:
- it is the preprocessing SAM's weights were trained with, and the one every user of an exported
  checkpoint through stock `SamPredictor` / `SamAutomaticMaskGenerator` gets;
- it avoids aliasing at least as well when shrinking: PIL widens its triangle filter by the
  scale factor (a true antialiasing filter). Shrinking a 1920 px grating to 1024 px, the
  residual of stripes finer than the new Nyquist limit (period 2.5 px) is std 8 grey levels
  with PIL bilinear, 22 with INTER_AREA and 56 with INTER_LINEAR (input std 90).
Masks take the same resize (as float, cut at 0.5), so targets land on the image's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from samexp.config.errors import DatasetError


def input_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) of an H×W image resized so its longest side is `size`, rounded as SAM rounds."""
    scale = size * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def check_fits(name: str, height: int, width: int, size: int) -> None:
    """Refuse an image whose shorter side the resize to `size` px would round to 0 pixels
    (wider than 2·size : 1, e.g. 20000×1 at 1024): PIL and torch fail on it deep inside."""
    if min(input_shape(height, width, size)) < 1:
        raise DatasetError(
            f"{name} is {width}×{height} pixels: at the model's {size} px input its shorter side "
            f"would be 0 pixels; crop or pad it to a side ratio of at most {2 * size}:1"
        )


def resize_longest_side(array: np.ndarray, size: int) -> np.ndarray:
    """H×W(×3) -> h×w(×3) with max(h, w) == size, aspect ratio kept (SAM's geometry): one resize
    for images and masks alike, so both land on exactly the same grid."""
    h, w = input_shape(*array.shape[:2], size)
    resized = Image.fromarray(np.ascontiguousarray(array)).resize((w, h), Image.BILINEAR)
    return np.array(resized)  # a writable copy: torch refuses read-only arrays


def resize_mask_longest_side(mask: np.ndarray, size: int) -> np.ndarray:
    """H×W bool -> h×w bool on the same grid as `resize_longest_side`.

    Resized as float and cut at 0.5 (pixel at least half covered), rather than nearest
    neighbour, which drops or shifts thin structures such as ring bands.
    """
    return resize_longest_side(mask.astype(np.float32), size) >= 0.5


def pad_to_square(t: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last two dims at the bottom/right to size×size (where SAM expects padding)."""
    h, w = t.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}×{w} to {size}×{size}: resize first")
    out = t.new_zeros(*t.shape[:-2], size, size)
    out[..., :h, :w] = t
    return out


@dataclass(frozen=True)
class Frame:
    """Where one image sits in the model's S×S input: what maps prompts in and masks out."""

    size: int  # S, the model's input side
    input_size: tuple[int, int]  # (h, w) of the resized image, before padding
    original_size: tuple[int, int]  # (H, W)

    @classmethod
    def of(cls, height: int, width: int, size: int) -> Frame:
        """The frame of an H×W image at input side `size` (without resizing it)."""
        return cls(size, input_shape(height, width, size), (height, width))

    def points(self, xy: torch.Tensor) -> torch.Tensor:
        """…×2 xy in original pixels -> the same points in the frame (float)."""
        (old_h, old_w), (new_h, new_w) = self.original_size, self.input_size
        out = xy.to(torch.float).clone()
        out[..., 0] = out[..., 0] * (new_w / old_w)
        out[..., 1] = out[..., 1] * (new_h / old_h)
        return out

    def boxes(self, xyxy: torch.Tensor) -> torch.Tensor:
        """N×4 xyxy boxes in original pixels -> in the frame."""
        return self.points(xyxy.reshape(-1, 2, 2)).reshape(-1, 4)

    def logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """N×C×h×w low-res logits -> N×C×H×W at the original size: upsampled to the S×S frame,
        the padding cropped off, upsampled to the image (as `Sam.postprocess_masks`)."""
        full = F.interpolate(low_res, (self.size, self.size), mode="bilinear", align_corners=False)
        image = full[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(image, self.original_size, mode="bilinear", align_corners=False)

    def masks(self, low_res: torch.Tensor, threshold: float) -> torch.Tensor:
        """N×C×H×W bool masks at the original size: the logits above the model's threshold."""
        return self.logits(low_res) > threshold


def to_model_input(image: np.ndarray, size: int) -> tuple[torch.Tensor, Frame]:
    """H×W×3 uint8 RGB -> the model's uint8 3×S×S input (resized, zero-padded bottom/right) and
    its frame; the model's own normalisation follows in `samexp.models.seam.encode`."""
    resized = resize_longest_side(image, size)
    tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
    return pad_to_square(tensor, size), Frame.of(image.shape[0], image.shape[1], size)
