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

A family whose models were trained on stretched squares (SAM 2: `SAM2Transforms` resizes to S×S,
aspect ratio not kept, no padding) gets the other geometry, `Pipeline(size, stretch=True)`: the
image resized to S×S as SAM 2 resizes it (torchvision's antialiased bilinear on the 0..1 image,
kept as uint8, so within half a grey level of it), prompts scaled per axis, and the low-res logits
upsampled straight to the original size (`SAM2Transforms.postprocess_masks`). Which geometry a
model uses is its family's answer (`samexp.models.family`), so datasets receive a `Pipeline`.
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


def resize_to_square(array: np.ndarray, size: int) -> np.ndarray:
    """H×W(×C) uint8 or float -> size×size, as SAM 2's transform resizes (antialiased bilinear on
    values in 0..1; uint8 comes back rounded to uint8, float as float)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    t = (t[None] if t.ndim == 2 else t.permute(2, 0, 1)).float()
    out = F.interpolate(t[None], (size, size), mode="bilinear", align_corners=False,
                        antialias=True)[0]  # fmt: skip
    out = out[0] if array.ndim == 2 else out.permute(1, 2, 0)
    if array.dtype == np.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out.numpy()


@dataclass(frozen=True)
class Frame:
    """Where one image sits in the model's S×S input: what maps prompts in and masks out."""

    size: int  # S, the model's input side
    input_size: tuple[int, int]  # (h, w) of the resized image, before padding
    original_size: tuple[int, int]  # (H, W)
    stretch: bool = False  # resized to S×S, aspect ratio not kept (SAM 2), no padding

    @classmethod
    def of(cls, height: int, width: int, size: int, stretch: bool = False) -> Frame:
        """The frame of an H×W image at input side `size` (without resizing it)."""
        shape = (size, size) if stretch else input_shape(height, width, size)
        return cls(size, shape, (height, width), stretch)

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
        the padding cropped off, upsampled to the image (as `Sam.postprocess_masks`); a stretched
        frame's straight to the image (as `SAM2Transforms.postprocess_masks`)."""
        if self.stretch:
            return F.interpolate(low_res, self.original_size, mode="bilinear", align_corners=False)
        full = F.interpolate(low_res, (self.size, self.size), mode="bilinear", align_corners=False)
        image = full[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(image, self.original_size, mode="bilinear", align_corners=False)

    def masks(self, low_res: torch.Tensor, threshold: float) -> torch.Tensor:
        """N×C×H×W bool masks at the original size: the logits above the model's threshold."""
        return self.logits(low_res) > threshold


def to_model_input(image: np.ndarray, size: int) -> tuple[torch.Tensor, Frame]:
    """H×W×3 uint8 RGB -> the model's uint8 3×S×S input (resized, zero-padded bottom/right) and
    its frame; the model's own normalisation follows in `samexp.models.seam.encode`."""
    return Pipeline(size).image(image)


@dataclass(frozen=True)
class Pipeline:
    """A model's input geometry: its side S and whether images are stretched to S×S (SAM 2) or
    resized by their longest side and padded (SAM, MobileSAM). Every path into a model goes
    through one: datasets, evaluation, predict and the demo."""

    size: int
    stretch: bool = False

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise DatasetError(f"the model's input size must be positive, got {self.size}")

    def frame(self, height: int, width: int) -> Frame:
        return Frame.of(height, width, self.size, self.stretch)

    def check_fits(self, name: str, height: int, width: int) -> None:
        """A stretched image always fits; a resized one must keep a pixel on its shorter side."""
        if not self.stretch:
            check_fits(name, height, width, self.size)

    def image(self, image: np.ndarray) -> tuple[torch.Tensor, Frame]:
        """H×W×3 uint8 RGB -> the model's uint8 3×S×S input and its frame."""
        frame = self.frame(*image.shape[:2])
        if self.stretch:
            resized = resize_to_square(image, self.size)
        else:
            resized = resize_longest_side(image, self.size)
        tensor = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1)
        return pad_to_square(tensor, self.size), frame

    def masks(self, masks: np.ndarray) -> torch.Tensor:
        """K×H×W bool -> K×S×S bool in the frame, on the image's grid (resized as float, cut at 0.5)."""
        if self.stretch:
            resized = [resize_to_square(m.astype(np.float32), self.size) >= 0.5 for m in masks]
        else:
            resized = [resize_mask_longest_side(m, self.size) for m in masks]
        return pad_to_square(torch.from_numpy(np.stack(resized)), self.size)
